"""*Add to clinic dataset*, the Slicer side of the review loop that feeds adaptation (adapt.py).

- `clinicCase` turns a reviewed landmarks node into what `CephLandmarksLib.annotations.clinic_dataset.add_case`
  writes: the radiograph's grey pixels as detection read them (`volumes.radiographFromVolume`), the
  *current* (corrected) points in image pixels (`markups.landmarkRows`: the node's positions through the
  inverse of the pixel-to-RAS matrix detection placed them with), the detection's spacing and the
  volume's placement.  It refuses, with one line, a point without a position, a spacing that was
  only assumed, and a volume that is not the detected image.
- `unreviewedFlagged`: flagged points the user neither marked reviewed nor moved (the module asks
  before adding a detection that has some).

MRML only (MRML nodes, numpy and CephLandmarksLib): no qt, no slicer.app; it runs headless under slicer-core.
"""

import numpy as np

from CephLandmarksLib.annotations.clinic_dataset import add_case
from CephLandmarksLib.errors import CephError

from .markups import landmarkRows
from .record import VOLUME_REFERENCE, detectionRecord
from .volumes import radiographFromVolume


def unreviewedFlagged(landmarksNode) -> list:
    """Abbreviations of the flagged points that were neither marked reviewed nor corrected."""
    return [row["abbreviation"] for row in landmarkRows(landmarksNode)
            if row["flagged"] and not row.get("reviewed") and not row.get("edited")]


def clinicCase(landmarksNode, volumeNode=None) -> dict:
    """The arguments of clinic_dataset.add_case for a reviewed landmarks node (CephError if unusable)."""
    record = detectionRecord(landmarksNode)
    if record is None:
        raise CephError("select a landmarks node made by detection")
    volumeNode = volumeNode or landmarksNode.GetNodeReference(VOLUME_REFERENCE)
    if volumeNode is None:
        raise CephError("the landmarks' radiograph is not in the scene")
    if record.get("spacing_source") == "assumed":
        raise CephError(f"the pixel spacing of '{volumeNode.GetName()}' is unknown (0.1 mm was assumed): set "
                        "Pixel spacing and detect again before adding it to a clinic dataset")
    radiograph = radiographFromVolume(volumeNode)
    width, height = record["image_size_px"]
    if radiograph.pixels.shape != (height, width):
        raise CephError(f"volume '{volumeNode.GetName()}' is not the image the landmarks were detected on")
    rows = sorted(landmarkRows(landmarksNode), key=lambda r: r["index"])
    points = np.array([[row["x_px"], row["y_px"]] if row.get("present") else [np.nan, np.nan] for row in rows],
                      dtype=float)
    return {"image_id": volumeNode.GetName(), "pixels": radiograph.pixels, "points_px": points,
            "spacing_mm": tuple(float(s) for s in record["spacing_mm"]),
            "landmark_abbreviations": [row["abbreviation"] for row in rows],
            "origin_lps": radiograph.origin_lps, "direction_lps": radiograph.direction_lps}


def addToClinicDataset(landmarksNode, folder, replace=False, volumeNode=None):
    """Write the node's radiograph and current points into the clinic dataset `folder`
    (clinic_dataset.add_case: whole or nothing; DuplicateCase unless replace).  Returns AddedCase."""
    if not folder:
        raise CephError("choose the clinic dataset folder first")
    return add_case(folder, replace=replace, **clinicCase(landmarksNode, volumeNode))
