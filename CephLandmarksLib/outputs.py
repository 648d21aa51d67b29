"""Writing a detection: the CLI JSON, a Slicer markups file (LPS) and an overlay PNG."""

import json
from pathlib import Path

import numpy as np

from .files import atomic_write
from .text import probability_text

MARKUPS_SCHEMA = (
    "https://raw.githubusercontent.com/slicer/slicer/master/Modules/Loadable/Markups/Resources/Schema/"
    "markups-schema-v1.0.3.json#"
)


def _write_text(path, text):
    def write(tmp):
        with open(tmp, "w") as f:
            f.write(text)

    atomic_write(path, write)


def markups_dict(detection) -> dict:
    """A Slicer markups fiducial node (schema v1.0.3): one control point per landmark, LPS mm.

    Flagged points are written unselected, so Slicer draws them in the node's
    unselected colour (red); confident points are selected (green).  Landmarks outside
    the image have positionStatus "missing" (and a zero position, which Slicer ignores).
    """
    points = []
    for lm, lps in zip(detection.landmarks, detection.points_lps):
        points.append({
            "id": str(lm.index),
            "label": lm.abbreviation,
            "description": f"{lm.name}; confidence {lm.confidence:.3f}; ERE {lm.ere_mm:.2f} mm"
            + (f"; P(error > {detection.large_error_mm:g} mm) {probability_text(lm.p_large_error)}"
               if np.isfinite(lm.p_large_error) else "")
            + ("; FLAGGED" if lm.flagged else "") + ("; MISSING (outside the image)" if lm.missing else ""),
            "associatedNodeID": "",
            "position": [0.0, 0.0, 0.0] if lm.missing else [round(float(v), 4) for v in lps],
            "orientation": [-1.0, 0.0, 0.0, 0.0, -1.0, 0.0, 0.0, 0.0, 1.0],
            "selected": not lm.flagged,
            "locked": False,
            "visibility": True,
            "positionStatus": "missing" if lm.missing else "defined",
        })
    return {
        "@schema": MARKUPS_SCHEMA,
        "markups": [{
            "type": "Fiducial",
            "coordinateSystem": "LPS",
            "coordinateUnits": "mm",
            "locked": False,
            "fixedNumberOfControlPoints": False,
            "labelFormat": "%N-%d",
            "lastUsedControlPointNumber": len(points),
            "controlPoints": points,
            "measurements": [],
            "display": {
                "visibility": True, "opacity": 1.0,
                "color": [0.9, 0.1, 0.1],  # unselected = flagged
                "selectedColor": [0.1, 0.85, 0.2],  # selected = confident
                "activeColor": [0.4, 1.0, 1.0],
                "propertiesLabelVisibility": False, "pointLabelsVisibility": True,
                "textScale": 3.0, "glyphType": "Sphere3D", "glyphScale": 2.0, "glyphSize": 3.0,
                "useGlyphScale": True, "sliceProjection": False,
            },
        }],
    }


def write_detection(detection, radiograph, out_dir: Path, stem: str, overlay: bool = True) -> list:
    """NAME.json, NAME.mrk.json and (unless overlay=False) the overlay NAME.png; returns their paths."""
    out_dir = Path(out_dir)
    paths = [out_dir / f"{stem}.json", out_dir / f"{stem}.mrk.json"]
    _write_text(paths[0], json.dumps(detection.to_json_dict(), indent=2))
    _write_text(paths[1], json.dumps(markups_dict(detection), indent=2))
    if overlay:
        from .plots import render_overlay  # matplotlib: only for the picture

        paths.append(out_dir / f"{stem}.png")
        atomic_write(paths[2], lambda tmp: render_overlay(radiograph.pixels, detection, tmp))
    return paths
