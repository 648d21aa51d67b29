"""A landmarks node written out: Slicer's .mrk.json, a CSV of its current rows, the CLI's JSON
(what `ceph-landmarks detect` writes, at the current points with the recomputed measurements)
and the library's report (PDF and PNG: an overview page, then a page per named analysis).

MRML only: no qt, no slicer.app; it runs headless under slicer-core.
"""

import csv
import json
import re

import slicer

from CephLandmarksLib.cephalometry.detection_analyses import analyses_sections
from CephLandmarksLib.cephalometry.measurement_uncertainty import (
    DEFAULT_SAMPLES,
    DEFAULT_SEED,
    measure_corrected,
    results_json,
)
from CephLandmarksLib.errors import CephError

from .analysisTable import exportAnalysisOptions
from .maps import FINE_MAPS_KEY
from .markups import landmarkRows
from .record import VOLUME_REFERENCE, detectionRecord
from .review import currentDetection, measureLandmarks
from .volumes import radiographFromVolume


def exportMarkupsJson(landmarksNode, path):
    storage = slicer.vtkMRMLMarkupsJsonStorageNode()
    if landmarksNode.GetScene() is not None:
        landmarksNode.GetScene().AddNode(storage)
    storage.SetFileName(str(path))
    ok = storage.WriteData(landmarksNode)
    if landmarksNode.GetScene() is not None:
        landmarksNode.GetScene().RemoveNode(storage)
    if not ok:
        raise CephError(f"could not write {path}")


CSV_FIELDS = ("index", "name", "abbreviation", "x_px", "y_px", "x_mm", "y_mm", "confidence", "ere_mm",
              "p_large_error", "flagged", "reviewed", "edited")


def exportCsv(landmarksNode, path):
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(CSV_FIELDS + ("R", "A", "S"))
        for row in landmarkRows(landmarksNode):
            ras = row["ras"] if row.get("present", True) else ["", "", ""]
            writer.writerow([row.get(k, "") for k in CSV_FIELDS] + list(ras))


STALE_MEASUREMENTS_NOTE = ("computed at detection from the detected points: this scene keeps no heatmaps, "
                           "so they do not follow the corrected points")


CLI_LANDMARK_KEYS = ("index", "name", "abbreviation", "x_px", "y_px", "x_mm", "y_mm", "confidence", "ere_mm",
                     "p_large_error", "flagged", "refined", "reviewed", "edited")


def _cliLandmark(row):
    """A landmark of the CLI JSON: the CLI's fields at the current position.  "refined" (second stage: the
    point is the fine map's) is the detection's, so a corrected point, now the user's, has none: its
    "edited" says it was corrected."""
    return {k: row[k] for k in CLI_LANDMARK_KEYS if k in row and not (k == "refined" and row["edited"])}


def cliJson(landmarksNode, n=DEFAULT_SAMPLES, seed=DEFAULT_SEED):
    """The CLI's JSON (`ceph-landmarks detect`), with the current (possibly corrected) positions,
    per landmark "reviewed" and "edited", the second stage's "refiner" record and each uncorrected point's
    "refined" (as detect wrote them), and "measurements" recomputed at the current points
    (updateMeasurementsTable's rule): "corrected_landmarks" lists the corrected points and each
    item's "corrected" those it rests on.  A scene saved without heatmaps keeps the detection-time
    measurements, with a "note" saying so when points were corrected."""
    record = detectionRecord(landmarksNode)
    out = {k: v for k, v in record.items() if k not in ("landmarks", "pixel_to_ras", "model_frame")}
    rows = landmarkRows(landmarksNode)
    out["landmarks"] = [_cliLandmark(row) for row in rows if row.get("present", True)]
    results = measureLandmarks(landmarksNode, n, seed)
    if results is not None:
        corrected = [row["abbreviation"] for row in rows if row.get("present") and row["edited"]]
        out["measurements"] = results_json(results, n, seed, corrected, combined=bool(record.get(FINE_MAPS_KEY)))
    elif "measurements" in out and any(row["edited"] for row in rows):
        out["measurements"] = dict(out["measurements"], note=STALE_MEASUREMENTS_NOTE)
    return out


def exportCliJson(landmarksNode, path):
    with open(path, "w", encoding="utf-8") as f:
        json.dump(cliJson(landmarksNode), f, indent=2)


def exportReport(landmarksNode, volumeNode=None, outDir=".", stem=None, n=DEFAULT_SAMPLES, seed=DEFAULT_SEED):
    """The library's report (NAME_report.pdf and NAME_report.png in outDir) at the current
    (corrected) points: the overview, then a page per named analysis (the default set and the
    node's chosen one, as the CLI JSON carries them), all recomputed; corrected points are marked.
    volumeNode: the radiograph (default: the one the node references).  Needs matplotlib, not
    torch.  Returns the two paths."""
    from CephLandmarksLib.outputs.report import write_report  # needs matplotlib: imported on use

    volumeNode = volumeNode or landmarksNode.GetNodeReference(VOLUME_REFERENCE)
    if volumeNode is None:
        raise CephError("the landmarks' radiograph is not in the scene")
    detection, pointsMm, corrected = currentDetection(landmarksNode)
    if detection.probs is None:
        raise CephError("this scene keeps no heatmaps, so the measurements cannot be recomputed: detect again")
    pixels = radiographFromVolume(volumeNode).pixels
    if pixels.shape != (detection.image_size[1], detection.image_size[0]):
        raise CephError(f"volume '{volumeNode.GetName()}' is not the image the landmarks were detected on")
    results = measure_corrected(detection, pointsMm, corrected, n, seed)
    detection.extra.update(analyses_sections(detection, exportAnalysisOptions(landmarksNode), points_mm=pointsMm,
                                             corrected=corrected, n=n, seed=seed))
    stem = stem or re.sub(r"[^\w.-]+", "_", volumeNode.GetName()).strip("._") or "radiograph"
    return write_report(pixels, detection, results, outDir, stem, corrected=detection.extra["corrected_landmarks"])


EXPORTERS = {"mrk.json": exportMarkupsJson, "csv": exportCsv, "json": exportCliJson}  # by file suffix


def exportLandmarks(landmarksNode, kind, path):
    """Write the node as `kind`, a key of EXPORTERS ("mrk.json", "csv" or "json")."""
    EXPORTERS[kind](landmarksNode, path)
