"""Slicer's region models follow the region rule (uncertainty/regions.py): a "90 %" region that is not
localised is not drawn, its point gets a dashed ring, and the ring is not read back as a region."""

import numpy as np
import pytest

slicer = pytest.importorskip("slicer")
if not hasattr(slicer, "vtkMRMLScene"):
    pytest.skip("slicer-core (MRML) is not installed", allow_module_level=True)

from slicer_fixtures import headlessScene, makeVolume, syntheticDetection  # noqa: E402

from CephLandmarksLib.imaging.geometry import ras_to_ijk  # noqa: E402
from CephLandmarksSlicer.contours import (  # noqa: E402
    RING_DASHES,
    RING_MM,
    contoursFromModels,
    createContourModels,
    ringLabels,
    setContoursVisible,
)
from CephLandmarksSlicer.markups import createLandmarksNode  # noqa: E402
from CephLandmarksSlicer.volumes import pixelToRASMatrix  # noqa: E402


def test_a_region_not_localised_becomes_a_dashed_ring_not_contours():
    scene = headlessScene()
    d = syntheticDetection((200, 240), (1.0, 1.0))
    volume = makeVolume(scene, np.zeros((240, 200), np.float32), (1.0, 1.0), (0.0, 0.0, 0.0), np.eye(3).tolist())
    far = d.landmarks[2]
    far.region_90_area_mm2 = 17_900.0  # its contours (a circle in the fixture) must not be drawn
    node = createLandmarksNode(scene, d, volume)
    _, model90 = createContourModels(scene, d, volume, node)
    ids = model90.GetPolyData().GetCellData().GetArray("Landmark")
    ids = np.array([ids.GetValue(i) for i in range(ids.GetNumberOfTuples())])
    assert far.index not in ids and (ids == -far.index).sum() == RING_DASHES * 4  # 12 dashes of 4 quads
    assert (ids == d.landmarks[0].index).sum() == 32  # a localised region: drawn as before
    back = contoursFromModels(node, pixelToRASMatrix(volume))
    assert "90" not in back.get(far.index, {}) and len(back[d.landmarks[0].index]["90"]) == 1


def test_the_ring_is_marked_with_a_question_mark_as_in_the_overlay_and_the_report():
    """A point list beside the landmarks holds one "?" per ring, on the ring's upper left, coloured as its
    landmark, with the reason; it is locked, cannot be picked, hides with the contours, goes with them."""
    scene = headlessScene()
    d = syntheticDetection((200, 240), (0.5, 0.5), flagged=(4,))  # Po flagged
    volume = makeVolume(scene, np.zeros((240, 200), np.float32), (0.5, 0.5), (10.0, -4.0, 2.0), np.eye(3).tolist())
    far, flaggedFar = d.landmarks[2], d.landmarks[3]
    far.region_90_area_mm2, flaggedFar.region_90_area_mm2 = 17_900.0, 1_350.0
    node = createLandmarksNode(scene, d, volume)
    createContourModels(scene, d, volume, node)
    labels = ringLabels(node)
    assert labels is not None and labels.GetNumberOfControlPoints() == 2
    assert [labels.GetNthControlPointLabel(i) for i in range(2)] == ["?", "?"]
    assert labels.GetNthControlPointDescription(0) == "Or: 90 % region not localised: 179 cm\u00b2"
    assert labels.GetNthControlPointDescription(1) == "Po: 90 % region not localised: 14 cm\u00b2"
    m = pixelToRASMatrix(volume)
    for i, lm in enumerate((far, flaggedFar)):
        offset = np.array(labels.GetNthControlPointPosition(i)) - m[:3, :3] @ [lm.x_px, lm.y_px, 0] - m[:3, 3]
        assert np.linalg.norm(offset) == pytest.approx(RING_MM)  # on the ring, 5 mm from the point
        dx, dy = ras_to_ijk(labels.GetNthControlPointPosition(i), m)[0, :2] - [lm.x_px, lm.y_px]
        assert dx < 0 and dy < 0  # the image's upper left (rows grow downwards), where the overlay writes it
    assert [bool(labels.GetNthControlPointSelected(i)) for i in range(2)] == [True, False]  # green, red
    display = labels.GetDisplayNode()
    assert display.GetGlyphTypeAsString() == "Vertex2D" and display.GetPointLabelsVisibility()
    assert labels.GetLocked() and not labels.GetSelectable() and labels.GetHideFromEditors()
    assert all(labels.GetNthControlPointLocked(i) for i in range(2)) and labels.GetFixedNumberOfControlPoints()
    assert labels.GetAttribute("CephLandmarks.Detection") is None  # never taken for a landmarks node
    setContoursVisible(node, False)
    assert not display.GetVisibility()
    setContoursVisible(node, True)
    assert display.GetVisibility()
    createContourModels(scene, syntheticDetection((200, 240), (0.5, 0.5)), volume, node)  # detected again: clean
    assert ringLabels(node) is None and scene.GetNodeByID(labels.GetID()) is None


def test_no_question_mark_where_every_region_is_localised():
    scene = headlessScene()
    d = syntheticDetection((200, 240), (1.0, 1.0))
    volume = makeVolume(scene, np.zeros((240, 200), np.float32), (1.0, 1.0), (0.0, 0.0, 0.0), np.eye(3).tolist())
    node = createLandmarksNode(scene, d, volume)
    createContourModels(scene, d, volume, node)
    assert ringLabels(node) is None and scene.GetNumberOfNodesByClass("vtkMRMLMarkupsFiducialNode") == 1
