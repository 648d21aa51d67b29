"""CephLandmarksSlicer's MRML modules (volumes, record, markups, maps, contours, heatmap, review, tables,
measurements, exports) against a real vtkMRMLScene from slicer-core (headless, no trained model)."""

import csv
import json

import numpy as np
import pytest

slicer = pytest.importorskip("slicer")
if not hasattr(slicer, "vtkMRMLScene"):
    pytest.skip("slicer-core (MRML) is not installed", allow_module_level=True)

from slicer_fixtures import headlessScene, makeVolume, syntheticDetection  # noqa: E402

from CephLandmarksSlicer.contours import contourModels, createContourModels, setContoursVisible  # noqa: E402
from CephLandmarksSlicer.exports import (  # noqa: E402
    STALE_MEASUREMENTS_NOTE,
    cliJson,
    exportCliJson,
    exportCsv,
    exportMarkupsJson,
    exportReport,
)
from CephLandmarksSlicer.heatmap import createHeatmapVolume  # noqa: E402
from CephLandmarksSlicer.maps import canRecomputeMeasurements, landmarkMaps  # noqa: E402
from CephLandmarksSlicer.markups import (  # noqa: E402
    CONFIDENT_COLOR,
    FLAGGED_COLOR,
    controlPointIndex,
    createLandmarksNode,
    isEdited,
    landmarkRows,
    setReviewed,
)
from CephLandmarksSlicer.measurements import (  # noqa: E402
    CORRECTED_MARK,
    MEASUREMENT_COLUMNS,
    SKIPPED_TEXT,
    createMeasurementsTable,
    measurementResultRows,
    updateMeasurementsTable,
)
from CephLandmarksSlicer.record import (  # noqa: E402
    HEATMAP_REFERENCE,
    MAPS_REFERENCE,
    MEASUREMENTS_REFERENCE,
    TABLE_REFERENCE,
    VOLUME_REFERENCE,
    detectionRecord,
    isLandmarksNode,
    landmarksNodesForVolume,
)
from CephLandmarksSlicer.review import measureLandmarks, reviewedDetection  # noqa: E402
from CephLandmarksSlicer.tables import TABLE_COLUMNS, tableRowLandmarkIndex, updateTable  # noqa: E402
from CephLandmarksSlicer.volumes import pixelToRASMatrix, radiographFromVolume  # noqa: E402

# A rotated, anisotropic, off-origin placement: pixel (x, y) -> RAS is not a plain scaling.
ANGLE = np.deg2rad(30)
DIRECTIONS = [[np.cos(ANGLE), -np.sin(ANGLE), 0.0], [0.0, 0.0, -1.0], [np.sin(ANGLE), np.cos(ANGLE), 0.0]]
SPACING = (0.12, 0.09)
ORIGIN = (-12.5, 40.0, 7.25)
SIZE = (200, 240)


@pytest.fixture
def scene():
    return headlessScene()


@pytest.fixture
def volume(scene):
    pixels = np.arange(SIZE[0] * SIZE[1], dtype=np.float32).reshape(SIZE[1], SIZE[0])
    return makeVolume(scene, pixels, SPACING, ORIGIN, DIRECTIONS)


@pytest.fixture
def detection():
    return syntheticDetection(SIZE, SPACING)


def ijkToRAS(volume, x, y):
    import vtk

    m = vtk.vtkMatrix4x4()
    volume.GetIJKToRASMatrix(m)
    return np.array(m.MultiplyPoint((x, y, 0.0, 1.0))[:3])


def test_radiograph_from_volume(volume):
    rad = radiographFromVolume(volume)
    assert rad.pixels.shape == (SIZE[1], SIZE[0])
    assert rad.pixels[5, 7] == 5 * SIZE[0] + 7  # row y=5, column x=7
    assert rad.spacing_mm == pytest.approx(SPACING) and rad.spacing_source == "volume"
    assert radiographFromVolume(volume, 0.2).spacing_mm == (0.2, 0.2)
    # LPS placement matches the volume's RAS placement
    from CephLandmarksLib.imaging.geometry import px_to_lps

    lps = px_to_lps([[10, 20]], rad.spacing_mm, rad.origin_lps, rad.direction_lps)[0]
    assert lps * np.array([-1, -1, 1]) == pytest.approx(ijkToRAS(volume, 10, 20))


def test_rejects_3d_volume(scene):
    import vtk

    from CephLandmarksLib.errors import CephError

    volume = scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "ct")
    image = vtk.vtkImageData()
    image.SetDimensions(32, 32, 5)
    image.AllocateScalars(vtk.VTK_SHORT, 1)
    volume.SetAndObserveImageData(image)
    with pytest.raises(CephError, match="single 2D image"):
        radiographFromVolume(volume)


def test_markups_node_contents_positions_and_colours(scene, volume, detection):
    detection.landmarks[11].flag_reasons = ["uncertain", "near_edge"]  # landmark 12 is flagged; 3 and 7 without reasons
    node = createLandmarksNode(scene, detection, volume)
    assert node.GetNumberOfControlPoints() == 19
    assert node.GetNodeReference(VOLUME_REFERENCE) is volume
    for i, lm in enumerate(detection.landmarks):
        assert node.GetNthControlPointLabel(i) == lm.abbreviation
        assert node.GetNthControlPointDescription(i).startswith(lm.name + "; confidence ")
        assert ("FLAGGED" in node.GetNthControlPointDescription(i)) == lm.flagged
        assert np.array(node.GetNthControlPointPosition(i)) == pytest.approx(ijkToRAS(volume, lm.x_px, lm.y_px))
        assert bool(node.GetNthControlPointSelected(i)) == (not lm.flagged)
    assert node.GetNthControlPointDescription(11).endswith("; FLAGGED (uncertain, near edge)")
    assert node.GetNthControlPointDescription(2).endswith("; FLAGGED")  # a record without reasons (older versions)
    display = node.GetDisplayNode()
    assert display.GetColor() == pytest.approx(FLAGGED_COLOR)
    assert display.GetSelectedColor() == pytest.approx(CONFIDENT_COLOR)
    assert not isEdited(node)


def test_contour_geometry(scene, volume, detection):
    from vtk.util import numpy_support

    from CephLandmarksLib.imaging.geometry import ras_to_ijk

    node = createLandmarksNode(scene, detection, volume)
    models = createContourModels(scene, detection, volume, node)
    assert [m.GetName() for m in models] == [f"{node.GetName()} 50% regions", f"{node.GetName()} 90% regions"]
    assert contourModels(node) == models
    m = pixelToRASMatrix(volume)
    for model, factor in zip(models, (1, 2), strict=True):
        poly = model.GetPolyData()
        assert poly.GetNumberOfCells() == 19 * 32
        assert model.GetDisplayNode().GetVisibility2D()
        ijk = ras_to_ijk(numpy_support.vtk_to_numpy(poly.GetPoints().GetData()), m)
        assert np.abs(ijk[:, 2]) == pytest.approx(0.5)  # a ribbon straddling the slice
        cellLandmark = numpy_support.vtk_to_numpy(poly.GetCellData().GetArray("Landmark"))
        colors = numpy_support.vtk_to_numpy(poly.GetPointData().GetArray("Color"))
        for lm in detection.landmarks:
            cells = np.flatnonzero(cellLandmark == lm.index)
            ids = np.unique([poly.GetCell(c).GetPointId(k) for c in cells for k in range(4)])
            radius = (12.0 if lm.flagged else 5.0) * factor
            assert np.hypot(ijk[ids, 0] - lm.x_px, ijk[ids, 1] - lm.y_px) == pytest.approx(radius, abs=1e-6)
            expected = np.round(np.array(FLAGGED_COLOR if lm.flagged else CONFIDENT_COLOR) * 255)
            assert (colors[ids] == expected).all()
    setContoursVisible(node, False)
    assert not any(m.GetDisplayNode().GetVisibility() for m in models)
    createContourModels(scene, detection, volume, node)  # replaces, never accumulates
    assert scene.GetNumberOfNodesByClass("vtkMRMLModelNode") == 2


@pytest.mark.parametrize("mirrored", [False, True])
def test_heatmap_volume_is_aligned(scene, volume, detection, mirrored):
    import dataclasses

    import vtk
    from vtk.util import numpy_support

    if mirrored:  # a left-facing image: the model saw it mirrored, the heatmap must be flipped back
        detection = dataclasses.replace(detection, frame=detection.frame.mirrored())
    node = createLandmarksNode(scene, detection, volume)
    heatmap = createHeatmapVolume(scene, detection, volume, node)
    assert node.GetNodeReference(HEATMAP_REFERENCE) is heatmap
    assert heatmap.GetDisplayNode().GetColorNodeID() == "vtkMRMLColorTableNodeIron"
    dims = heatmap.GetImageData().GetDimensions()
    values = numpy_support.vtk_to_numpy(heatmap.GetImageData().GetPointData().GetScalars()).reshape(dims[1], dims[0])
    assert values.max() == pytest.approx(1.0)
    m = vtk.vtkMatrix4x4()
    heatmap.GetIJKToRASMatrix(m)
    lm = detection.landmarks[0]
    u, v = detection.frame.image_to_model([lm.x_px, lm.y_px])
    ras = np.array(m.MultiplyPoint((u, v, 0, 1))[:3])
    assert ras == pytest.approx(ijkToRAS(volume, lm.x_px, lm.y_px), abs=1e-6)


def test_table_rows_edits_and_review(scene, volume, detection):
    node = createLandmarksNode(scene, detection, volume)
    table = updateTable(scene, node)
    assert node.GetNodeReference(TABLE_REFERENCE) is table
    t = table.GetTable()
    assert t.GetNumberOfRows() == 19
    assert [t.GetColumnName(c) for c in range(t.GetNumberOfColumns())] == [c for c, _ in TABLE_COLUMNS]
    flags = [t.GetValueByName(r, "Flagged").ToString() for r in range(19)]
    assert flags == ["yes"] * 3 + ["no"] * 16  # flagged first
    first = detection.landmarks[tableRowLandmarkIndex(table, 0) - 1]
    assert first.flagged and t.GetValueByName(0, "Landmark").ToString() == first.name
    assert t.GetValueByName(0, "X (mm)").ToDouble() == pytest.approx(first.x_mm)
    assert t.GetValueByName(0, "ERE (mm)").ToDouble() == pytest.approx(first.ere_mm)
    # flagged rows by decreasing probability of a large error: landmark 12 (0.32) before 7 and 3
    assert [tableRowLandmarkIndex(table, r) for r in range(3)] == [12, 7, 3]
    assert t.GetValueByName(0, "P(large error) (%)").ToDouble() == pytest.approx(32.0)
    assert "P(large error) 32 %" in node.GetNthControlPointDescription(11)

    # the user drags point 2 (Nasion) by 10 pixels along x
    lm = detection.landmarks[1]
    node.SetNthControlPointPosition(1, *ijkToRAS(volume, lm.x_px + 10, lm.y_px))
    assert isEdited(node)
    row = next(r for r in landmarkRows(node) if r["index"] == 2)
    assert row["edited"] and row["x_px"] == pytest.approx(lm.x_px + 10)
    assert row["x_mm"] == pytest.approx((lm.x_px + 10) * SPACING[0])
    setReviewed(node, 2)
    assert node.GetNthControlPointDescription(1).endswith("; reviewed")
    updateTable(scene, node)
    r = next(r for r in range(19) if tableRowLandmarkIndex(table, r) == 2)
    assert t.GetValueByName(r, "Reviewed").ToString() == "yes" and t.GetValueByName(r, "Edited").ToString() == "yes"
    assert landmarksNodesForVolume(scene, volume) == [node]


def test_exports(scene, volume, detection, tmp_path):
    import slicer as s

    node = createLandmarksNode(scene, detection, volume)
    exportMarkupsJson(node, tmp_path / "l.mrk.json")
    data = json.loads((tmp_path / "l.mrk.json").read_text())
    points = data["markups"][0]["controlPoints"]
    assert [p["label"] for p in points] == [lm.abbreviation for lm in detection.landmarks]
    assert [p["selected"] for p in points] == [not lm.flagged for lm in detection.landmarks]
    # read back with Slicer's own reader
    reader = s.vtkMRMLMarkupsJsonStorageNode()
    scene.AddNode(reader)
    reader.SetFileName(str(tmp_path / "l.mrk.json"))
    loaded = scene.AddNewNodeByClass("vtkMRMLMarkupsFiducialNode", "loaded")
    assert reader.ReadData(loaded)
    assert loaded.GetNumberOfControlPoints() == 19
    assert np.array(loaded.GetNthControlPointPosition(4)) == pytest.approx(node.GetNthControlPointPosition(4), abs=1e-3)

    exportCsv(node, tmp_path / "l.csv")
    rows = list(csv.DictReader(open(tmp_path / "l.csv")))
    assert len(rows) == 19 and rows[0]["abbreviation"] == "S" and float(rows[0]["x_px"]) == pytest.approx(
        detection.landmarks[0].x_px)

    exportCliJson(node, tmp_path / "l.json")
    cli = json.loads((tmp_path / "l.json").read_text())
    assert cli["spacing_mm"] == list(SPACING) and cli["model"]["name"] == "synthetic"
    assert [lm["abbreviation"] for lm in cli["landmarks"]] == [lm.abbreviation for lm in detection.landmarks]
    assert cli["landmarks"][2]["flagged"] is True and cli["landmarks"][0]["edited"] is False


def test_mrb_round_trip(scene, volume, detection, tmp_path):
    node = createLandmarksNode(scene, detection, volume)
    createContourModels(scene, detection, volume, node)
    createHeatmapVolume(scene, detection, volume, node)
    updateTable(scene, node)
    lm = detection.landmarks[5]
    moved = ijkToRAS(volume, lm.x_px + 3, lm.y_px - 4)
    node.SetNthControlPointPosition(5, *moved)
    setReviewed(node, 6)
    assert scene.WriteToMRB(str(tmp_path / "case.mrb"))

    again = headlessScene()
    assert again.ReadFromMRB(str(tmp_path / "case.mrb"))
    nodes = [n for n in (again.GetNthNodeByClass(i, "vtkMRMLMarkupsFiducialNode")
                         for i in range(again.GetNumberOfNodesByClass("vtkMRMLMarkupsFiducialNode")))
             if isLandmarksNode(n)]
    assert len(nodes) == 1
    loaded = nodes[0]
    assert loaded.GetNumberOfControlPoints() == 19
    assert np.array(loaded.GetNthControlPointPosition(5)) == pytest.approx(moved, abs=1e-3)
    assert [bool(loaded.GetNthControlPointSelected(i)) for i in range(19)] == [not x.flagged for x in
                                                                                detection.landmarks]
    assert loaded.GetDisplayNode().GetColor() == pytest.approx(FLAGGED_COLOR)
    vol = loaded.GetNodeReference(VOLUME_REFERENCE)
    assert vol is not None and vol.GetImageData().GetDimensions() == (SIZE[0], SIZE[1], 1)
    assert pixelToRASMatrix(vol) == pytest.approx(pixelToRASMatrix(volume))
    assert len(contourModels(loaded)) == 2
    assert contourModels(loaded)[0].GetPolyData().GetNumberOfCells() == 19 * 32
    assert loaded.GetNodeReference(HEATMAP_REFERENCE).GetImageData() is not None
    rows = {r["index"]: r for r in landmarkRows(loaded)}
    assert rows[6]["edited"] and rows[6]["reviewed"] and not rows[1]["edited"]
    assert rows[6]["x_px"] == pytest.approx(lm.x_px + 3, abs=1e-3)
    table = updateTable(again, loaded)
    assert table.GetTable().GetNumberOfRows() == 19


def measurementsDetection():
    """The synthetic detection with wide heatmaps (wide intervals, some challenge class calls uncertain) and Gonion
    missing."""
    from dataclasses import replace

    detection = syntheticDetection(SIZE, SPACING)
    probs = np.asarray(detection.probs, dtype=np.float64) ** 0.2
    detection.probs = (probs / probs.sum(axis=(1, 2), keepdims=True)).astype(np.float32)
    gonion = next(i for i, lm in enumerate(detection.landmarks) if lm.abbreviation == "Go")
    detection.landmarks[gonion] = replace(detection.landmarks[gonion], x_px=float("nan"), y_px=float("nan"),
                                          x_mm=float("nan"), y_mm=float("nan"), flagged=True, missing=True)
    return detection


def measurementColumns(t):
    return [t.GetColumnName(c) for c in range(t.GetNumberOfColumns())]


def test_measurements_table(scene, volume):
    from CephLandmarksLib.cephalometry.measurements import MEASUREMENTS

    detection = measurementsDetection()
    node = createLandmarksNode(scene, detection, volume)
    table = createMeasurementsTable(scene, detection, landmarksNode=node, n=400)
    assert node.GetNodeReference(MEASUREMENTS_REFERENCE) is table
    t = table.GetTable()
    assert measurementColumns(t) == [c for c, _ in MEASUREMENT_COLUMNS]
    assert t.GetNumberOfRows() == len(MEASUREMENTS)
    names = [t.GetValueByName(r, "Measurement").ToString() for r in range(t.GetNumberOfRows())]
    notes = [t.GetValueByName(r, "Note").ToString() for r in range(t.GetNumberOfRows())]
    skipped = [c == SKIPPED_TEXT for c in notes]
    assert 0 < sum(skipped) and skipped == sorted(skipped)  # skipped rows last
    done = [m for m in MEASUREMENTS if m.key in {r["key"] for r in measureLandmarks(node, n=400)}]
    assert [n for n, s in zip(names, skipped, strict=True) if not s] == [
        f"{m.key}: {m.name}" if m.key not in m.name else m.name for m in done]  # the library's order
    for r in range(t.GetNumberOfRows()):
        lo, med, hi = (t.GetValueByName(r, c).ToDouble() for c in ("5 %", "Median", "95 %"))
        if skipped[r]:
            assert np.isnan(med)
            continue
        assert lo <= med <= hi
        assert t.GetValueByName(r, "Definition").ToString() and notes[r] == ""
    # updating reuses the node
    assert createMeasurementsTable(scene, detection, landmarksNode=node, n=400) is table
    assert scene.GetNumberOfNodesByClass("vtkMRMLTableNode") == 1


def test_the_flat_measurements_table_grades_nothing_by_the_challenge_classes(scene, volume):
    """The challenge's class bands are not clinical norms: they appear only under the ISBI 2015 analysis."""
    from CephLandmarksLib.cephalometry.measurements import MEASUREMENTS

    detection = measurementsDetection()
    node = createLandmarksNode(scene, detection, volume)
    results = measureLandmarks(node, n=400)
    assert any(r.get("class_label") for r in results)  # the library's flat list still carries them (JSON)
    table = createMeasurementsTable(scene, detection, landmarksNode=node, n=400)
    labels = [label for m in MEASUREMENTS for _, label in m.classes or ()]
    columns = measurementColumns(table.GetTable())
    assert not any("class" in c.lower() or c == "Uncertain" for c in columns)
    for row in tableCells(table):
        assert not any(label in cell for cell in row for label in labels), row


def test_measurements_table_mrb_round_trip(scene, volume, tmp_path):
    detection = measurementsDetection()
    node = createLandmarksNode(scene, detection, volume)
    table = createMeasurementsTable(scene, detection, landmarksNode=node, n=400)
    expected = [[table.GetTable().GetValue(r, c).ToString() for c in range(len(MEASUREMENT_COLUMNS))]
                for r in range(table.GetTable().GetNumberOfRows())]
    assert scene.WriteToMRB(str(tmp_path / "case.mrb"))

    again = headlessScene()
    assert again.ReadFromMRB(str(tmp_path / "case.mrb"))
    loaded = next(n for n in (again.GetNthNodeByClass(i, "vtkMRMLMarkupsFiducialNode")
                              for i in range(again.GetNumberOfNodesByClass("vtkMRMLMarkupsFiducialNode")))
                  if isLandmarksNode(n))
    t = loaded.GetNodeReference(MEASUREMENTS_REFERENCE).GetTable()
    assert measurementColumns(t) == [c for c, _ in MEASUREMENT_COLUMNS]
    got = [[t.GetValue(r, c).ToString() for c in range(t.GetNumberOfColumns())] for r in range(t.GetNumberOfRows())]
    assert len(got) == len(expected)
    for a, b in zip(got, expected, strict=True):
        assert a[:2] + a[6:] == b[:2] + b[6:]
        for x, y in zip(a[2:6], b[2:6], strict=True):
            assert (x in ("", "nan") and y in ("", "nan")) or float(x) == pytest.approx(float(y), rel=1e-5)


def test_missing_landmark_has_no_position(scene, volume):
    """A landmark outside the image becomes a control point without a position, never NaN or the border."""
    detection = measurementsDetection()
    node = createLandmarksNode(scene, detection, volume)
    i = controlPointIndex(node, 10)  # Gonion, missing
    assert node.GetNthControlPointLabel(i) == "Go"
    assert node.GetNthControlPointPositionStatus(i) == node.PositionMissing
    assert node.GetNthControlPointPositionStatus(controlPointIndex(node, 1)) == node.PositionDefined
    rows = {r["index"]: r for r in landmarkRows(node)}
    assert not rows[10]["present"] and not rows[10]["edited"] and rows[10]["flagged"]
    assert rows[1]["present"] and not isEdited(node)
    table = updateTable(scene, node)
    assert table.GetTable().GetNumberOfRows() == 19


# --- measurements that follow the clinician's corrections ----------------------------------------

N_DRAWS = 400


def landmarkIndex(abbreviation):
    from CephLandmarksLib.landmarks import ISBI_LANDMARKS

    return next(i for i, lm in enumerate(ISBI_LANDMARKS) if lm.abbreviation == abbreviation)


def usesLandmark(key, abbreviation):
    from CephLandmarksLib.cephalometry.measurement_uncertainty import landmarks_used
    from CephLandmarksLib.cephalometry.measurements import BY_KEY

    return landmarkIndex(abbreviation) in landmarks_used(BY_KEY[key])


def movePoint(node, volume, detection, abbreviation, dx, dy):
    i = landmarkIndex(abbreviation)
    lm = detection.landmarks[i]
    node.SetNthControlPointPosition(controlPointIndex(node, lm.index), *ijkToRAS(volume, lm.x_px + dx, lm.y_px + dy))


def tableCells(tableNode):
    t = tableNode.GetTable()
    return [[t.GetValue(r, c).ToString() for c in range(t.GetNumberOfColumns())] for r in range(t.GetNumberOfRows())]


def byKey(results):
    return {r["key"]: r for r in results}


NUMBERS = ("value", "median", "p05", "p95")


def rowNames(keys):
    """The table's names of measurements `keys`, without marks."""
    from CephLandmarksLib.cephalometry.measurements import BY_KEY

    return {f"{k}: {BY_KEY[k].name}" if k not in BY_KEY[k].name else BY_KEY[k].name for k in keys}


def unmarked(name):
    return name.removesuffix(CORRECTED_MARK)


def test_landmark_maps_are_kept_hidden_and_replaced_on_redo(scene, volume, detection):
    node = createLandmarksNode(scene, detection, volume)
    maps = node.GetNodeReference(MAPS_REFERENCE)
    assert maps is not None and maps.GetHideFromEditors() and maps.IsA("vtkMRMLScalarVolumeNode")
    assert np.array_equal(landmarkMaps(node), detection.probs)
    assert landmarkMaps(node).dtype == np.float32
    assert detectionRecord(node)["model_frame"] == {
        "image_size": list(detection.frame.image_size), "model_size": list(detection.frame.model_size),
        "scaled_size": list(detection.frame.scaled_size), "offset": list(detection.frame.offset), "mirror_x": False}
    assert canRecomputeMeasurements(node)
    # slice k of the maps sits over the radiograph like the heatmap volume
    import vtk

    m = vtk.vtkMatrix4x4()
    maps.GetIJKToRASMatrix(m)
    lm = detection.landmarks[3]
    u, v = detection.frame.image_to_model([lm.x_px, lm.y_px])
    assert np.array(m.MultiplyPoint((u, v, 0, 1))[:3]) == pytest.approx(ijkToRAS(volume, lm.x_px, lm.y_px), abs=1e-6)

    # detection redone on the same node: the maps are replaced, never accumulated
    other = syntheticDetection(SIZE, SPACING, seed=7)
    assert createLandmarksNode(scene, other, volume, node) is node
    hidden = [scene.GetNthNodeByClass(i, "vtkMRMLScalarVolumeNode")
              for i in range(scene.GetNumberOfNodesByClass("vtkMRMLScalarVolumeNode"))]
    hidden = [n for n in hidden if n.GetHideFromEditors()]
    assert hidden == [node.GetNodeReference(MAPS_REFERENCE)] and scene.GetNodeByID(maps.GetID()) is None
    assert np.array_equal(landmarkMaps(node), other.probs)


def test_unedited_node_gives_the_detection_time_table(scene, volume, detection):
    from CephLandmarksLib.cephalometry.measurement_uncertainty import measure_detection

    node = createLandmarksNode(scene, detection, volume)
    table = createMeasurementsTable(scene, detection, landmarksNode=node, n=N_DRAWS)
    expected = measurementResultRows(measure_detection(detection, n=N_DRAWS))
    assert tableCells(table) == [[vtkString(v) for v in row] for row in expected]
    assert all(row[7] == "" and not row[0].endswith(CORRECTED_MARK) for row in tableCells(table))
    results = measureLandmarks(node, n=N_DRAWS)
    for r, e in zip(results, measure_detection(detection, n=N_DRAWS), strict=True):
        assert r["corrected"] == [] and r["key"] == e["key"]
        assert r["value"] == pytest.approx(e["value"], rel=1e-12, abs=1e-12)  # points went through RAS and back
        assert all(r[k] == e[k] for k in ("median", "p05", "p95")) and r.get("classes") == e.get("classes")
    # updating reuses the table; a detection-less table goes through the same rows
    assert updateMeasurementsTable(scene, node, n=N_DRAWS) is table
    free = createMeasurementsTable(scene, detection, name="free", n=N_DRAWS)
    assert tableCells(free) == tableCells(table)


def vtkString(value):
    import vtk

    return vtk.vtkVariant(value).ToString()


def test_moving_a_point_changes_exactly_the_measurements_that_use_it(scene, volume, detection):
    node = createLandmarksNode(scene, detection, volume)
    table = createMeasurementsTable(scene, detection, landmarksNode=node, n=N_DRAWS)
    before = byKey(measureLandmarks(node, n=N_DRAWS))
    movePoint(node, volume, detection, "B", 15, -6)
    after = byKey(measureLandmarks(node, n=N_DRAWS))
    assert after.keys() == before.keys()
    using = {k for k in after if usesLandmark(k, "B")}
    assert using == {"ANB", "SNB", "ODI", "APDI"}
    for key, r in after.items():
        if key in using:
            assert r["value"] != before[key]["value"] and r["corrected"] == ["B"], key
        else:
            assert all(r[k] == before[key][k] for k in NUMBERS) and r["corrected"] == [], key
    # the table marks the rows resting on B (name and column)
    updateMeasurementsTable(scene, node, n=N_DRAWS)
    t = table.GetTable()
    names = [t.GetValueByName(r, "Measurement").ToString() for r in range(t.GetNumberOfRows())]
    corrected = [t.GetValueByName(r, "Corrected landmarks").ToString() for r in range(t.GetNumberOfRows())]
    marked = {n for n, c in zip(names, corrected, strict=True) if c}
    assert len(marked) == 4 and set(corrected) == {"", "B"}
    assert all(n.endswith(CORRECTED_MARK) == bool(c) for n, c in zip(names, corrected, strict=True))
    assert {unmarked(n) for n in marked} == rowNames(using)
    snb = next(r for r in range(t.GetNumberOfRows()) if "SNB" in names[r])
    assert t.GetValueByName(snb, "Value").ToDouble() == pytest.approx(after["SNB"]["value"])


def test_corrected_points_are_exact_in_every_draw(scene, volume, detection):
    node = createLandmarksNode(scene, detection, volume)
    before = byKey(measureLandmarks(node, n=N_DRAWS))
    assert before["SNB"]["p95"] > before["SNB"]["p05"]
    for abbreviation, (dx, dy) in {"S": (4, 2), "N": (-3, 5), "B": (6, -2)}.items():
        movePoint(node, volume, detection, abbreviation, dx, dy)
    after = byKey(measureLandmarks(node, n=N_DRAWS))
    snb = after["SNB"]  # S, N and B all corrected: no uncertainty left
    assert snb["corrected"] == ["S", "N", "B"]
    assert snb["median"] == pytest.approx(snb["value"], abs=1e-9)
    assert snb["p05"] == pytest.approx(snb["p95"], abs=1e-9) and snb["class_probability"] == 1.0
    anb = after["ANB"]  # A is still drawn from its heatmap
    assert anb["corrected"] == ["S", "N", "B"] and anb["p95"] - anb["p05"] > 1e-3
    # three of its four points fixed: no wider than with all four drawn
    assert anb["p95"] - anb["p05"] <= before["ANB"]["p95"] - before["ANB"]["p05"] + 1e-9


@pytest.mark.parametrize("how", ["delete", "unplace"])
def test_deleted_or_unplaced_point_skips_its_measurements(scene, volume, detection, how):
    node = createLandmarksNode(scene, detection, volume)
    table = createMeasurementsTable(scene, detection, landmarksNode=node, n=N_DRAWS)
    before = byKey(measureLandmarks(node, n=N_DRAWS))
    i = controlPointIndex(node, detection.landmarks[landmarkIndex("Ar")].index)
    if how == "delete":
        node.RemoveNthControlPoint(i)
    else:
        node.SetNthControlPointPositionMissing(i)
    after = byKey(measureLandmarks(node, n=N_DRAWS))
    assert set(before) - set(after) == {"Gonial", "Saddle", "Articular", "Bjork"}
    for key, r in after.items():
        assert all(r[k] == before[key][k] for k in NUMBERS) and r["corrected"] == []
    updateMeasurementsTable(scene, node, n=N_DRAWS)
    t = table.GetTable()
    skipped = {t.GetValueByName(r, "Measurement").ToString()
               for r in range(t.GetNumberOfRows()) if t.GetValueByName(r, "Note").ToString() == SKIPPED_TEXT}
    assert skipped == rowNames({"Gonial", "Saddle", "Articular", "Bjork"}) and t.GetNumberOfRows() == len(before)
    detection2 = reviewedDetection(node)
    ar = detection2.landmarks[landmarkIndex("Ar")]
    assert ar.missing and np.isnan(ar.x_px)
    assert detection2.extra["corrected_landmarks"] == []


def test_placing_a_missing_landmark_counts_as_corrected(scene, volume):
    detection = measurementsDetection()  # Gonion missing
    node = createLandmarksNode(scene, detection, volume)
    assert "Gonial" not in byKey(measureLandmarks(node, n=N_DRAWS))
    i = controlPointIndex(node, 10)
    node.SetNthControlPointPosition(i, *ijkToRAS(volume, 60, 150))
    gonial = byKey(measureLandmarks(node, n=N_DRAWS))["Gonial"]
    assert gonial["corrected"] == ["Go"]


def test_reviewed_detection(scene, volume, detection):
    node = createLandmarksNode(scene, detection, volume)
    createContourModels(scene, detection, volume, node)
    movePoint(node, volume, detection, "B", 15, -6)
    reviewed = reviewedDetection(node, n=N_DRAWS)
    b = landmarkIndex("B")
    assert reviewed.points_px[b] == pytest.approx([detection.landmarks[b].x_px + 15, detection.landmarks[b].y_px - 6])
    others = [i for i in range(19) if i != b]
    assert reviewed.points_px[others] == pytest.approx(detection.points_px[others], abs=1e-6)
    assert reviewed.frame == detection.frame and reviewed.spacing_mm == detection.spacing_mm
    assert np.array_equal(reviewed.probs, detection.probs)
    assert reviewed.extra["corrected_landmarks"] == ["B"]
    # contours read back from the models for uncorrected points, none for the corrected one
    assert reviewed.landmarks[b].contours_px == {}
    for level in ("50", "90"):
        (line,) = reviewed.landmarks[0].contours_px[level]
        assert line == pytest.approx(detection.landmarks[0].contours_px[level][0], abs=1e-6)
    out = reviewed.to_json_dict()
    assert out["measurements"]["corrected_landmarks"] == ["B"]
    items = {item["key"]: item for item in out["measurements"]["items"]}
    expected = byKey(measureLandmarks(node, n=N_DRAWS))
    assert items["SNB"]["corrected"] == ["B"] and items["SNB"]["value"] == round(expected["SNB"]["value"], 2)
    # the origin and axes match the radiograph's
    rad = radiographFromVolume(volume)
    assert reviewed.origin_lps == pytest.approx(rad.origin_lps) and reviewed.direction_lps == pytest.approx(
        rad.direction_lps)


def test_reviewed_detection_keeps_the_flag_rule_and_regions(scene, volume, detection):
    """An adapted model's rule ("P(error > 4 mm) >= 2 %") survives the node: the PDF and JSON say it."""
    detection.flag_rule = {"score": "p_large_error", "threshold": 0.02}
    detection.regions = {"method": "split-conformal", "masses": {"50": [0.4] * 19, "90": [0.85] * 19}}
    node = createLandmarksNode(scene, detection, volume)
    reviewed = reviewedDetection(node, n=N_DRAWS)
    assert reviewed.flag_rule == detection.flag_rule and reviewed.regions == detection.regions
    assert reviewed.flag_rule_text() == "P(error > 4 mm) ≥ 2 %"


def test_cli_json_carries_the_recomputed_measurements(scene, volume, detection):
    node = createLandmarksNode(scene, detection, volume)
    unedited = cliJson(node)
    assert "model_frame" not in unedited and unedited["measurements"]["corrected_landmarks"] == []
    movePoint(node, volume, detection, "B", 15, -6)
    cli = cliJson(node)
    assert cli["measurements"]["corrected_landmarks"] == ["B"] and "corrected" in cli["measurements"]["method"]
    new = {item["key"]: item for item in cli["measurements"]["items"]}
    old = {item["key"]: item for item in unedited["measurements"]["items"]}
    expected = byKey(measureLandmarks(node))
    for key, item in new.items():
        assert item["value"] == pytest.approx(expected[key]["value"], abs=0.006)
        if usesLandmark(key, "B"):
            assert item["corrected"] == ["B"] and item["value"] != old[key]["value"], key
        else:
            assert item == old[key], key
    json.dumps(cli)  # JSON-ready


def test_report_export_marks_corrected_points(scene, volume, detection, tmp_path, monkeypatch):
    pytest.importorskip("matplotlib")
    from CephLandmarksLib.outputs import report

    node = createLandmarksNode(scene, detection, volume)
    createContourModels(scene, detection, volume, node)
    movePoint(node, volume, detection, "B", 15, -6)
    seen = {}
    real = report.write_report

    def spy(pixels, det, results, outDir, stem, corrected=None):
        seen.update(pixels=pixels, detection=det, results=results, corrected=corrected)
        fig = report.report_figure(pixels, det, results, corrected=corrected)
        seen["texts"] = [t.get_text() for t in fig.texts] + [
            cell.get_text().get_text() for ax in fig.axes for table in ax.tables for cell in table.get_celld().values()]
        return real(pixels, det, results, outDir, stem, corrected)

    monkeypatch.setattr(report, "write_report", spy)
    paths = exportReport(node, volume, tmp_path, stem="case", n=N_DRAWS)
    pdf, png = tmp_path / "case_report.pdf", tmp_path / "case_report.png"
    assert set(paths) == {pdf, png}
    assert pdf.read_bytes()[:5] == b"%PDF-" and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert seen["pixels"].shape == (SIZE[1], SIZE[0]) and seen["corrected"] == ["B"]
    assert byKey(seen["results"])["SNB"]["corrected"] == ["B"]
    assert seen["detection"].points_px[landmarkIndex("B"), 0] == pytest.approx(
        detection.landmarks[landmarkIndex("B")].x_px + 15)
    assert any(t.startswith("B*  ") for t in seen["texts"]) and not any(t.startswith("A*  ") for t in seen["texts"])
    assert any("corrected by the clinician (B)" in t for t in seen["texts"])
    assert any(t.startswith("SNB") and t.endswith(" *") for t in seen["texts"])
    # the named analyses at the current points: the overview's key rows, then a page each
    from CephLandmarksLib.cephalometry.measurements import MEASUREMENTS

    analyses = seen["detection"].extra["analyses"]
    assert [a["key"] for a in analyses] == ["steiner", "downs", "bjork_jarabak", "mcnamara", "isbi2015"]
    assert "SNB angle (°) *" in seen["texts"] and "Steiner" in seen["texts"]
    labels = [label for m in MEASUREMENTS for _, label in m.classes or ()]
    assert not any(label in t for t in seen["texts"] for label in labels)  # the challenge's classes: its page only
    pages = pdf.read_bytes()
    assert pages.count(b"/Type /Page") - pages.count(b"/Type /Pages") == 1 + len(analyses)


def test_mrb_round_trip_keeps_what_recomputation_needs(scene, volume, detection, tmp_path):
    import dataclasses

    from CephLandmarksLib.imaging.geometry import ModelFrame

    f = detection.frame  # an offset, mirrored frame: every field must survive the round trip
    detection = dataclasses.replace(detection, frame=ModelFrame(f.image_size, f.model_size, f.scaled_size, (2, -1),
                                                                True))
    node = createLandmarksNode(scene, detection, volume)
    createContourModels(scene, detection, volume, node)
    createHeatmapVolume(scene, detection, volume, node)
    createMeasurementsTable(scene, detection, landmarksNode=node, n=N_DRAWS)
    movePoint(node, volume, detection, "B", 15, -6)
    updateMeasurementsTable(scene, node, n=N_DRAWS)
    expected = measureLandmarks(node, n=N_DRAWS)
    expectedCells = tableCells(node.GetNodeReference(MEASUREMENTS_REFERENCE))
    assert scene.WriteToMRB(str(tmp_path / "case.mrb"))

    again = headlessScene()
    assert again.ReadFromMRB(str(tmp_path / "case.mrb"))
    loaded = next(n for n in (again.GetNthNodeByClass(i, "vtkMRMLMarkupsFiducialNode")
                              for i in range(again.GetNumberOfNodesByClass("vtkMRMLMarkupsFiducialNode")))
                  if isLandmarksNode(n))
    maps = loaded.GetNodeReference(MAPS_REFERENCE)
    assert maps is not None and maps.GetHideFromEditors()
    assert canRecomputeMeasurements(loaded) and np.array_equal(landmarkMaps(loaded), detection.probs)
    assert reviewedDetection(loaded, measurements=False).frame == detection.frame
    got = measureLandmarks(loaded, n=N_DRAWS)
    assert [r["key"] for r in got] == [r["key"] for r in expected]
    for r, e in zip(got, expected, strict=True):
        assert r["corrected"] == e["corrected"]
        assert all(r[k] == pytest.approx(e[k], rel=1e-9, abs=1e-9) for k in NUMBERS), r["key"]
    assert byKey(got)["SNB"]["corrected"] == ["B"]
    table = updateMeasurementsTable(again, loaded, n=N_DRAWS)
    assert table is loaded.GetNodeReference(MEASUREMENTS_REFERENCE) and tableCells(table) == expectedCells
    assert again.GetNumberOfNodesByClass("vtkMRMLTableNode") == 1


def test_scene_without_stored_maps_keeps_the_old_measurements(scene, volume, detection):
    node = createLandmarksNode(scene, detection, volume)
    table = createMeasurementsTable(scene, detection, landmarksNode=node, n=N_DRAWS)
    scene.RemoveNode(node.GetNodeReference(MAPS_REFERENCE))  # as in a scene saved before the maps were kept
    assert not canRecomputeMeasurements(node)
    before = tableCells(table)
    movePoint(node, volume, detection, "B", 15, -6)
    assert updateMeasurementsTable(scene, node) is None and tableCells(table) == before
    cli = cliJson(node)
    assert cli["measurements"]["note"] == STALE_MEASUREMENTS_NOTE
    assert cli["measurements"]["items"] == detectionRecord(node)["measurements"]["items"]
    from CephLandmarksLib.errors import CephError

    with pytest.raises(CephError, match="no heatmaps"):
        exportReport(node, volume, ".")
