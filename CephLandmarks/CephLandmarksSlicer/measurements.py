"""The flat measurements table node, recomputed from the landmarks node's current points (review.py):
every measurement of the library (the ISBI 2015 challenge's eight and the extras) with its value,
median and 90 % interval over draws from the heatmaps, and the corrected points each rests on.
Fast enough to run (debounced) after every edit.

No norms and no classes here: the chosen named analysis (analysisTable.py) grades values against
its norms, and the challenge's class bands (not clinical norms) appear only under the ISBI 2015
analysis.

MRML only: no qt, no slicer.app; it runs headless under slicer-core.
"""

from CephLandmarksLib.cephalometry.measurement_uncertainty import DEFAULT_SAMPLES, DEFAULT_SEED, measure_corrected
from CephLandmarksLib.cephalometry.measurements import MEASUREMENTS

from .maps import canRecomputeMeasurements, storeLandmarkMaps
from .record import MEASUREMENTS_REFERENCE
from .review import measureLandmarks
from .tables import resetTable

# A row resting on corrected points ends with CORRECTED_MARK and names them in "Corrected landmarks";
# a measurement that uses a missing landmark is kept as a row, its "Note" SKIPPED_TEXT.
MEASUREMENT_COLUMNS = (("Measurement", "string"), ("Unit", "string"), ("Value", "double"), ("Median", "double"),
                       ("5 %", "double"), ("95 %", "double"), ("Note", "string"), ("Corrected landmarks", "string"),
                       ("Definition", "string"))
CORRECTED_MARK = " \u270e"
SKIPPED_TEXT = "skipped: landmark missing"


def measurementResultRows(results):
    """Rows (tuples in MEASUREMENT_COLUMNS order) of measurement reports (measure_corrected's dicts),
    in the library's order, then the skipped ones (a landmark they use is missing or was deleted)."""
    from CephLandmarksLib.outputs.report import measurement_rows  # the report module: imported on use

    rows = []
    for r, strings in zip(results, measurement_rows(results), strict=True):
        corrected = r.get("corrected") or []
        rows.append((strings[0] + (CORRECTED_MARK if corrected else ""), strings[1], r["value"], r["median"], r["p05"],
                     r["p95"], "", ", ".join(corrected), r["definition"]))
    done = {r["key"] for r in results}
    nan = float("nan")
    for m in MEASUREMENTS:
        if m.key not in done:
            rows.append((f"{m.key}: {m.name}" if m.key not in m.name else m.name,
                         {"deg": "\u00b0"}.get(m.unit, m.unit), nan, nan, nan, nan, SKIPPED_TEXT, "", m.definition))
    return rows


def measurementTableRows(detection, n=DEFAULT_SAMPLES, seed=DEFAULT_SEED):
    """Rows of a Detection's measurements at its own points (nothing corrected)."""
    return measurementResultRows(measure_corrected(detection, n=n, seed=seed))


def _measurementsTableNode(scene, landmarksNode, tableNode, name):
    if tableNode is None and landmarksNode is not None:
        tableNode = landmarksNode.GetNodeReference(MEASUREMENTS_REFERENCE)
    if tableNode is None:
        baseName = name or (f"{landmarksNode.GetName()} measurements" if landmarksNode else "measurements")
        tableNode = scene.AddNewNodeByClass("vtkMRMLTableNode", name or scene.GenerateUniqueName(baseName))
    elif name:
        tableNode.SetName(name)
    if landmarksNode is not None:
        landmarksNode.SetNodeReferenceID(MEASUREMENTS_REFERENCE, tableNode.GetID())
    return tableNode


def _fillMeasurementsTable(tableNode, results):
    rows = measurementResultRows(results)
    wasModifying = tableNode.StartModify()
    tableNode.SetLocked(False)
    table, arrays = resetTable(tableNode, MEASUREMENT_COLUMNS)
    for row in rows:
        for array, value in zip(arrays, row, strict=True):
            array.InsertNextValue(value)
    table.Modified()
    tableNode.SetUseColumnTitleAsColumnHeader(True)
    tableNode.SetColumnDescription("Value", "the measurement at the current points (corrected ones as placed)")
    tableNode.SetColumnDescription("5 %", "5th percentile of the measurement over draws from the heatmaps")
    tableNode.SetColumnDescription("95 %", "95th percentile of the measurement over draws from the heatmaps")
    tableNode.SetColumnDescription("Note", f"'{SKIPPED_TEXT}' when the measurement uses a missing or deleted point")
    tableNode.SetColumnDescription("Corrected landmarks", "corrected points this measurement uses (name marked "
                                   "\u270e): taken as exact, only the other points are drawn from their heatmaps")
    tableNode.SetLocked(True)
    tableNode.EndModify(wasModifying)
    return tableNode


def updateMeasurementsTable(scene, landmarksNode, tableNode=None, name=None, n=DEFAULT_SAMPLES, seed=DEFAULT_SEED):
    """Recompute the landmarks node's measurements table from its *current* points; returns the table node.

    Corrected points (moved, or placed after being missing) are exact; the others are drawn from the
    heatmaps stored with the node (same seed as at detection: an unedited node gives the detection-time
    table); a deleted or unplaced point counts as missing (its measurements are skipped).  Rows resting
    on corrected points are marked.  Fills `tableNode`, or the one the node references (role
    CephLandmarksMeasurements), creating it if needed.  Fast enough to run (debounced) on every edit.
    Returns None, leaving any table unchanged, for a node saved without heatmaps (an older scene:
    see canRecomputeMeasurements).
    """
    results = measureLandmarks(landmarksNode, n, seed)
    if results is None:
        return None
    return _fillMeasurementsTable(_measurementsTableNode(scene, landmarksNode, tableNode, name), results)


def createMeasurementsTable(scene, detection, name=None, tableNode=None, landmarksNode=None,
                            n=DEFAULT_SAMPLES, seed=DEFAULT_SEED):
    """Fill a vtkMRMLTableNode with measurements (value, median, 90 % interval, note, corrected
    landmarks, definition); returns it.

    With `landmarksNode` (the usual call, at detection): the same as `updateMeasurementsTable`, from the
    node's current points and stored heatmaps (stored from `detection` first if the node has none);
    the node references the table, so it is kept with the scene.  Without it: the detection's own
    points, nothing corrected.
    """
    if landmarksNode is None:
        return _fillMeasurementsTable(_measurementsTableNode(scene, None, tableNode, name),
                                      measure_corrected(detection, n=n, seed=seed))
    if not canRecomputeMeasurements(landmarksNode):
        storeLandmarkMaps(scene, detection, landmarksNode)
    return updateMeasurementsTable(scene, landmarksNode, tableNode, name, n, seed)
