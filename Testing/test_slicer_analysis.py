"""The chosen named analysis in Slicer, headless (slicer-core): its table (norm, deviation, interpretation,
P(outside)) and its lines as markups line nodes, both following a dragged point; a flagged point named on
its rows and cleared by a correction; a bad choice refused with one line; the choice saved on the node."""

import numpy as np
import pytest

slicer = pytest.importorskip("slicer")
if not hasattr(slicer, "vtkMRMLScene"):
    pytest.skip("slicer-core (MRML) is not installed", allow_module_level=True)

from slicer_fixtures import headlessScene, makeVolume, syntheticDetection  # noqa: E402

from CephLandmarksLib.cephalometry.anatomy import INDEX  # noqa: E402
from CephLandmarksLib.errors import CephError  # noqa: E402
from CephLandmarksSlicer.analysisLines import analysisLineNodes, updateAnalysisLines  # noqa: E402
from CephLandmarksSlicer.analysisTable import (  # noqa: E402
    ANALYSIS_COLUMNS,
    FLAGGED_MARK,
    analysisChoices,
    chooseAnalysis,
    chosenAnalysis,
    updateAnalysisTable,
)
from CephLandmarksSlicer.markups import controlPointIndex, createLandmarksNode  # noqa: E402

SPACING = (0.12, 0.09)
SIZE = (200, 240)
N_DRAWS = 300
# A right-facing profile in the 200 x 240 image (pixels): the synthetic grid's points would be no head.
PROFILE = np.array([
    (60, 60), (150, 55), (135, 78), (45, 80), (148, 115), (142, 160), (140, 178), (132, 188), (138, 185),
    (60, 150), (150, 135), (155, 137), (168, 125), (166, 150), (162, 108), (158, 182), (75, 110), (160, 108),
    (50, 105)], dtype=float)


@pytest.fixture
def scene():
    return headlessScene()


@pytest.fixture
def setup(scene):
    directions = [[0.0, 1.0, 0.0], [-1.0, 0.0, 0.0], [0.0, 0.0, 1.0]]  # a rotated placement: RAS is not pixels
    volume = makeVolume(scene, np.zeros(SIZE[::-1], dtype=np.float32), SPACING, (5.0, -3.0, 2.0), directions)
    detection = syntheticDetection(SIZE, SPACING, flagged=(INDEX["Po"] + 1,))
    for lm, (x, y) in zip(detection.landmarks, PROFILE, strict=True):
        lm.x_px, lm.y_px, lm.x_mm, lm.y_mm = x, y, x * SPACING[0], y * SPACING[1]
    node = createLandmarksNode(scene, detection, volume)
    from CephLandmarksSlicer.maps import storeLandmarkMaps

    storeLandmarkMaps(scene, detection, node)
    return node, volume, detection


def ras(volume, x, y):
    import vtk

    m = vtk.vtkMatrix4x4()
    volume.GetIJKToRASMatrix(m)
    return np.array(m.MultiplyPoint((x, y, 0.0, 1.0))[:3])


def cells(table, column):
    t = table.GetTable()
    return [t.GetValueByName(r, column) for r in range(t.GetNumberOfRows())]


def movePoint(node, volume, detection, abbreviation, dx, dy):
    lm = detection.landmarks[INDEX[abbreviation]]
    node.SetNthControlPointPosition(controlPointIndex(node, lm.index), *ras(volume, lm.x_px + dx, lm.y_px + dy))


def test_the_selector_lists_the_default_set_first():
    keys = [k for k, _ in analysisChoices()]
    assert keys[:5] == ["steiner", "downs", "bjork_jarabak", "mcnamara", "isbi2015"] and len(keys) == 10


def test_choosing_an_analysis_shows_its_table_and_lines(scene, setup):
    node, volume, detection = setup
    assert chosenAnalysis(node) == "steiner"
    chooseAnalysis(node, "downs")
    table, entry = updateAnalysisTable(scene, node, n=N_DRAWS)
    assert entry["key"] == "downs" and table.GetTable().GetNumberOfColumns() == len(ANALYSIS_COLUMNS)
    names = [v.ToString() for v in cells(table, "Measurement")]
    assert len(names) == len(entry["measurements"]) and "Norm" in [c for c, _ in ANALYSIS_COLUMNS]
    facial = next(i for i, n in enumerate(names) if "Facial angle" in n)
    assert names[facial].startswith(FLAGGED_MARK)  # FH rests on the flagged porion
    assert "porion" in cells(table, "Note")[facial].ToString()
    assert cells(table, "Norm")[facial].ToString().startswith("87.8")
    lines = updateAnalysisLines(scene, node, [entry])
    assert {"horizontal", "facial", "A-Pog", "MP-GoMe"} <= set(lines)
    fh = lines["horizontal"]
    start, end = np.array(fh.GetNthControlPointPosition(0)), np.array(fh.GetNthControlPointPosition(1))
    po, orb = (ras(volume, *PROFILE[INDEX[k]]) for k in ("Po", "Or"))
    direction = (end - start) / np.linalg.norm(end - start)
    for p in (po, orb):  # FH passes through Po and Or, in RAS
        assert np.linalg.norm(np.cross(direction, p - start)) == pytest.approx(0.0, abs=1e-6)
    assert fh.GetLocked()


def test_dragging_a_point_updates_the_values_and_moves_the_lines(scene, setup):
    node, volume, detection = setup
    chooseAnalysis(node, "steiner")
    table, entry = updateAnalysisTable(scene, node, n=N_DRAWS)
    lines = updateAnalysisLines(scene, node, [entry])
    snb = next(m for m in entry["measurements"] if m["key"] == "SNB")
    nb_before = np.array(lines["NB"].GetNthControlPointPosition(1))
    movePoint(node, volume, detection, "B", -8, 0)
    table2, entry2 = updateAnalysisTable(scene, node, n=N_DRAWS)
    assert table2 is table
    snb2 = next(m for m in entry2["measurements"] if m["key"] == "SNB")
    assert snb2["value"] < snb["value"] - 1.0 and snb2["interval_90"] != snb["interval_90"]
    row = next(r for r, n in enumerate(cells(table, "Measurement")) if "SNB" in n.ToString())
    assert cells(table, "Value")[row].ToDouble() == pytest.approx(snb2["value"])
    lines2 = updateAnalysisLines(scene, node, [entry2])
    assert lines2["NB"] is lines["NB"]  # the same node, moved
    assert not np.allclose(np.array(lines2["NB"].GetNthControlPointPosition(1)), nb_before)
    b = ras(volume, *(PROFILE[INDEX["B"]] + (-8, 0)))
    n_ = np.array(lines2["NB"].GetNthControlPointPosition(0))
    d = np.array(lines2["NB"].GetNthControlPointPosition(1)) - n_
    assert np.linalg.norm(np.cross(d / np.linalg.norm(d), b - n_)) == pytest.approx(0.0, abs=1e-6)


def test_correcting_porion_clears_its_flag_and_other_analyses_replace_the_lines(scene, setup):
    node, volume, detection = setup
    chooseAnalysis(node, "downs")
    movePoint(node, volume, detection, "Po", 1, 0)  # the clinician places porion
    table, entry = updateAnalysisTable(scene, node, n=N_DRAWS)
    assert not any(m["flagged_points"] for m in entry["measurements"])
    assert not any(n.ToString().startswith(FLAGGED_MARK) for n in cells(table, "Measurement"))
    updateAnalysisLines(scene, node, [entry])
    chooseAnalysis(node, "holdaway")
    _, holdaway = updateAnalysisTable(scene, node, n=N_DRAWS)
    lines = updateAnalysisLines(scene, node, [holdaway])
    assert set(lines) == {"H-line"} and set(analysisLineNodes(node)) == {"H-line"}
    assert scene.GetNumberOfNodesByClass("vtkMRMLMarkupsLineNode") == 1  # the Downs lines were removed


def test_a_bad_choice_is_one_line_and_leaves_the_node_as_it_was(setup, tmp_path):
    node, _, _ = setup
    chooseAnalysis(node, "mcnamara", horizontal="constructed", ageYears=12, sex="female")
    with pytest.raises(CephError, match="unknown analysis"):
        chooseAnalysis(node, "nope")
    bad = tmp_path / "norms.json"
    bad.write_text("[")
    with pytest.raises(CephError, match="norms.json"):
        chooseAnalysis(node, "steiner", norms=str(bad))
    assert chosenAnalysis(node) == "mcnamara"


def test_the_reviewed_json_carries_the_analyses_at_the_corrected_points(scene, setup):
    from CephLandmarksSlicer.review import reviewedDetection

    node, volume, detection = setup
    chooseAnalysis(node, "holdaway")
    movePoint(node, volume, detection, "Po", 1, 0)
    j = reviewedDetection(node, n=N_DRAWS).to_json_dict()
    keys = [a["key"] for a in j["analyses"]]
    assert keys == ["steiner", "downs", "bjork_jarabak", "mcnamara", "isbi2015", "holdaway"]
    assert j["analyses_context"]["corrected_landmarks"] == ["Po"]
    downs = next(a for a in j["analyses"] if a["key"] == "downs")
    assert not any(m["flagged_points"] for m in downs["measurements"])  # porion confirmed by the clinician


def test_the_challenge_classes_appear_only_under_the_isbi_analysis_and_say_what_they_are(scene, setup):
    from CephLandmarksLib.cephalometry.measurements import MEASUREMENTS
    from CephLandmarksSlicer.analysisTable import CHALLENGE_NOTE

    node, volume, detection = setup
    labels = [label for m in MEASUREMENTS for _, label in m.classes or ()]
    chooseAnalysis(node, "isbi2015")
    table, entry = updateAnalysisTable(scene, node, n=N_DRAWS)
    words = [v.ToString() for v in cells(table, "Interpretation")]
    assert any(w in labels for w in words)  # the challenge's own class words, as the JSON's ISBI rows
    assert all(v.ToString().startswith(CHALLENGE_NOTE) for v in cells(table, "Note"))
    assert table.GetColumnDescription("Interpretation") == entry["norm_label"] == \
        "ISBI 2015 challenge classes (benchmark, not clinical norms)"
    for key in ("steiner", "downs", "bjork_jarabak", "mcnamara"):
        chooseAnalysis(node, key)
        table, entry = updateAnalysisTable(scene, node, n=N_DRAWS)
        t = table.GetTable()
        text = [t.GetValue(r, c).ToString() for r in range(t.GetNumberOfRows()) for c in range(t.GetNumberOfColumns())]
        assert not any(label in x or CHALLENGE_NOTE in x for x in text for label in labels), key
        assert table.GetColumnDescription("Interpretation") != entry.get("norm_label")
