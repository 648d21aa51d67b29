"""The detection at a landmarks node's *current* points: what its measurements, the exports, the
report and the clinic dataset are computed from.

A corrected point (moved, or placed after being missing) is taken as exact; the others are drawn
from their stored heatmaps (maps.py) as at detection (same seed, so an unedited node gives the
detection-time numbers; with the second stage, from the combined coarse + fine map, as detect
drew them); a deleted or unplaced point counts as missing.

MRML only: no qt, no slicer.app; it runs headless under slicer-core.
"""

import numpy as np

from CephLandmarksLib.cephalometry.detection_analyses import analyses_sections
from CephLandmarksLib.cephalometry.measurement_uncertainty import (
    DEFAULT_SAMPLES,
    DEFAULT_SEED,
    measure_corrected,
    results_json,
)
from CephLandmarksLib.detection.result import Detection, LandmarkResult
from CephLandmarksLib.errors import CephError
from CephLandmarksLib.imaging.geometry import px_to_mm

from .contours import contoursFromModels
from .maps import canRecomputeMeasurements, landmarkCombinedMap, landmarkMaps
from .markups import landmarkRows
from .record import detectionRecord, frameFromRecord


def _reviewState(landmarksNode):
    """(rows, points in mm (L, 2) with NaN where absent, 0-based indices of corrected points)."""
    record = detectionRecord(landmarksNode)
    rows = landmarkRows(landmarksNode)
    pointsPx = np.array([[row["x_px"], row["y_px"]] if row.get("present") else [np.nan, np.nan] for row in rows],
                        dtype=np.float64)
    corrected = [i for i, row in enumerate(rows) if row.get("present") and row["edited"]]
    return rows, px_to_mm(pointsPx, record["spacing_mm"]), corrected


def currentDetection(landmarksNode, withContours=True):
    """(Detection at the current points, without measurements; points in mm; corrected indices).  It keeps
    the second stage's "refiner" record, and each uncorrected point's `refined` (a corrected one: None)."""
    record = detectionRecord(landmarksNode)
    if record is None:
        raise CephError("the node holds no CephLandmarks detection")
    rows, pointsMm, corrected = _reviewState(landmarksNode)
    m = np.asarray(record["pixel_to_ras"])
    contours = contoursFromModels(landmarksNode, m) if withContours else {}
    nan = float("nan")
    landmarks = []
    for i, row in enumerate(rows):
        present = bool(row.get("present"))
        x, y = (float(row["x_px"]), float(row["y_px"])) if present else (nan, nan)
        p = row.get("p_large_error")
        landmarks.append(LandmarkResult(
            int(row["index"]), row["name"], row["abbreviation"], x, y, float(pointsMm[i, 0]), float(pointsMm[i, 1]),
            float(row["confidence"]), nan if row.get("ere_mm") is None else float(row["ere_mm"]),
            bool(row["flagged"]), {} if i in corrected or not present else contours.get(int(row["index"]), {}),
            not present, nan if p is None else float(p),
            refined=None if i in corrected or row.get("refined") is None else bool(row["refined"])))
    rasToLps = np.diag([-1.0, -1.0, 1.0])
    axes = m[:3, :3] / np.maximum(np.linalg.norm(m[:3, :3], axis=0), 1e-12)
    probs = landmarkMaps(landmarksNode) if canRecomputeMeasurements(landmarksNode) else None
    detection = Detection(
        record["image"], tuple(record["image_size_px"]), tuple(record["spacing_mm"]), record["spacing_source"],
        dict(record["model"]), float(record["ere_threshold_mm"]), landmarks, probs, frameFromRecord(record),
        tuple(rasToLps @ m[:3, 3]), tuple((rasToLps @ axes).ravel()),
        {"corrected_landmarks": [rows[i]["abbreviation"] for i in corrected]},
        **{k: record[k] for k in ("framing", "orientation", "alignment", "large_error_mm", "regions", "flag_rule",
                                  "refiner") if k in record})
    if probs is not None:
        detection.combined = landmarkCombinedMap(landmarksNode, probs)  # second stage: draws from its map
    return detection, pointsMm, corrected


def measureLandmarks(landmarksNode, n=DEFAULT_SAMPLES, seed=DEFAULT_SEED):
    """The measurements at the node's current points (list of the library's dicts, each with
    "corrected"), or None if the node keeps no heatmaps.  Corrected points are exact, deleted or
    unplaced points missing, the others drawn from the stored heatmaps (measure_corrected)."""
    detection, pointsMm, corrected = currentDetection(landmarksNode, withContours=False)
    if detection.probs is None:
        return None
    return measure_corrected(detection, pointsMm, corrected, n, seed)


def reviewedDetection(landmarksNode, n=DEFAULT_SAMPLES, seed=DEFAULT_SEED, measurements=True):
    """A CephLandmarksLib Detection with the node's current (corrected) points, for exports and the report.

    A deleted or unplaced point is `missing`; confidence, ERE, P(large error) and flag are the
    detection's.  Contours (read back from the contour models) are kept for uncorrected points
    only.  probs are the stored heatmaps (None for a scene saved without them).  extra holds
    "corrected_landmarks" (abbreviations) and, when `measurements` is true and heatmaps are
    stored, "measurements" and the named "analyses" recomputed at the current points (so to_json_dict
    never falls back to the detection's points).
    """
    detection, pointsMm, corrected = currentDetection(landmarksNode)
    if measurements and detection.probs is not None:
        results = measure_corrected(detection, pointsMm, corrected, n, seed)
        detection.extra["measurements"] = results_json(results, n, seed, detection.extra["corrected_landmarks"],
                                                       combined=detection.combined is not None)
        from .analysisTable import exportAnalysisOptions  # the named analyses, at the same points

        detection.extra.update(analyses_sections(detection, exportAnalysisOptions(landmarksNode), points_mm=pointsMm,
                                                 corrected=corrected, n=n, seed=seed))
    return detection
