"""Writing a detection: the CLI JSON, a Slicer markups file (LPS), an overlay PNG and the heatmaps.

An image's files are written whole-or-nothing (files.write_group), as valid JSON (no bare NaN).
The overwrite rule (files.check_replaceable): an existing file at one of these names is replaced
only when it is recognisably an earlier output of ours (is_own_output); otherwise nothing is written.
"""

import json
import zipfile
from pathlib import Path

import numpy as np

from ..files import check_replaceable, is_tagged, json_text, write_group
from ..text import probability_text

JSON_SUFFIX = ".json"
MARKUPS_SUFFIX = ".mrk.json"
OVERLAY_SUFFIX = ".png"
_JSON_SNIFF_BYTES = 64 << 20  # an earlier output is far smaller; a larger .json is not ours

MARKUPS_SCHEMA = (
    "https://raw.githubusercontent.com/slicer/slicer/master/Modules/Loadable/Markups/Resources/Schema/"
    "markups-schema-v1.0.3.json#"
)


def _text_writer(text):
    def write(tmp):
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(text)

    return write


def markups_dict(detection) -> dict:
    """A Slicer markups fiducial node (schema v1.0.3): one control point per landmark, LPS mm.

    Flagged points are written unselected, so Slicer draws them in the node's
    unselected colour (red); confident points are selected (green).  Landmarks outside
    the image have positionStatus "missing" (and a zero position, which Slicer ignores).
    """
    points = []
    for lm, lps in zip(detection.landmarks, detection.points_lps, strict=True):
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


def output_paths(out_dir, stem: str, overlay: bool = True, heatmaps: bool = False) -> list:
    """The files one image's detection writes: NAME.json, NAME.mrk.json[, NAME.png][, NAME.heatmaps.npz]."""
    from ..detection.result import HEATMAPS_SUFFIX

    suffixes = [JSON_SUFFIX, MARKUPS_SUFFIX] + [OVERLAY_SUFFIX] * overlay + [HEATMAPS_SUFFIX] * heatmaps
    return [Path(out_dir) / f"{stem}{s}" for s in suffixes]


def check_outputs_replaceable(paths) -> None:
    """CephError naming the first of `paths` that exists and is not an earlier output of ours."""
    for path in paths:
        check_replaceable(path, is_own_output)


def is_own_output(path) -> bool:
    """Whether an existing file is recognisably one this package wrote: a detection JSON, our markups,
    a PNG or PDF carrying files.OUTPUT_TAG, or a heatmaps file with our arrays."""
    from ..detection.result import HEATMAPS_SUFFIX

    name = Path(path).name
    if name.endswith(HEATMAPS_SUFFIX):
        return _is_heatmaps_file(path)
    if name.endswith((".png", ".pdf")):
        return is_tagged(path)
    if name.endswith(JSON_SUFFIX):
        d = _json_object(path)
        return _is_detection_json(d) or _is_our_markups(d)
    return False


def _json_object(path):
    try:
        if Path(path).stat().st_size > _JSON_SNIFF_BYTES:
            return None
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def _is_detection_json(d) -> bool:
    return isinstance(d, dict) and isinstance(d.get("landmarks"), list) and isinstance(d.get("model"), dict) \
        and "spacing_source" in d


def _is_our_markups(d) -> bool:
    """A markups file whose points all carry our descriptions ("NAME; confidence C; ERE E mm...")."""
    try:
        points = d["markups"][0]["controlPoints"]
        return d["@schema"] == MARKUPS_SCHEMA and len(points) > 0 and all(
            "; confidence " in p["description"] and "; ERE " in p["description"] for p in points)
    except (KeyError, IndexError, TypeError):
        return False


def _is_heatmaps_file(path) -> bool:
    try:
        with zipfile.ZipFile(path) as z:
            return {"probs.npy", "frame.npy"} <= set(z.namelist())
    except (OSError, zipfile.BadZipFile):
        return False


def detection_writers(detection, radiograph, out_dir, stem: str, overlay: bool = True, heatmaps: bool = False):
    """[(path, write_fn(tmp))] for one image's outputs (output_paths), for files.write_group."""
    paths = output_paths(out_dir, stem, overlay, heatmaps)
    writers = [_text_writer(json_text(detection.to_json_dict())), _text_writer(json_text(markups_dict(detection)))]
    if overlay:
        from .plots import render_overlay  # matplotlib: only for the picture

        writers.append(lambda tmp: render_overlay(radiograph.pixels, detection, tmp))
    if heatmaps:
        from ..detection.result import save_heatmaps

        writers.append(lambda tmp: save_heatmaps(tmp, detection))
    return list(zip(paths, writers, strict=True))


def write_detection(detection, radiograph, out_dir: Path, stem: str, overlay: bool = True,
                    heatmaps: bool = False) -> list:
    """NAME.json, NAME.mrk.json, (unless overlay=False) the overlay NAME.png and (heatmaps=True)
    NAME.heatmaps.npz, all or none; returns their paths.  Existing files that are not earlier
    outputs of ours are refused (CephError) before anything is written."""
    jobs = detection_writers(detection, radiograph, out_dir, stem, overlay, heatmaps)
    check_outputs_replaceable([p for p, _ in jobs])
    return write_group(jobs)
