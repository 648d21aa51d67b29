"""The second stage in the Slicer helpers (headless MRML, slicer-core): a detection with a combined coarse +
fine map keeps its fine maps with the node, and the measurements recomputed from the node draw from the
combined map, as detect's did."""

import numpy as np
import pytest

slicer = pytest.importorskip("slicer")
if not hasattr(slicer, "vtkMRMLScene"):
    pytest.skip("slicer-core (MRML) is not installed", allow_module_level=True)

from slicer_fixtures import headlessScene, makeVolume, syntheticDetection  # noqa: E402

from CephLandmarksLib.cephalometry.measurement_uncertainty import (  # noqa: E402
    COMBINED_METHOD,
    measure_corrected,
    measure_detection,
)
from CephLandmarksLib.detection import combined_map as cmap  # noqa: E402
from CephLandmarksLib.imaging.crops import crop_frames  # noqa: E402
from CephLandmarksSlicer.exports import cliJson  # noqa: E402
from CephLandmarksSlicer.maps import FINE_MAPS_REFERENCE, landmarkCombinedMap  # noqa: E402
from CephLandmarksSlicer.markups import createLandmarksNode  # noqa: E402
from CephLandmarksSlicer.review import measureLandmarks, reviewedDetection  # noqa: E402

SPACING = (0.1, 0.1)
SIZE = (200, 240)
N = 300


def refinedDetection():
    """syntheticDetection with a combined map: 6 mm crops on its points, each fine map a sharp blob 1 mm off."""
    d = syntheticDetection(SIZE, SPACING)
    crops = crop_frames(d.points_px, SPACING, (24, 24), 0.25)
    vv, uu = np.mgrid[0:24, 0:24]
    blob = np.exp(-((uu - 15.5) ** 2 + (vv - 11.5) ** 2) / 2.0)
    fine = np.stack([blob / blob.sum()] * len(crops))
    d.combined = cmap.combine(d.probs, d.frame.model_to_image_matrix(), SPACING, fine, crops, d.points_px, 0.5)
    d.probs = d.combined.coarse
    for lm, p in zip(d.landmarks, d.combined.points_px, strict=True):
        lm.x_px, lm.y_px = float(p[0]), float(p[1])
        lm.x_mm, lm.y_mm = lm.x_px * SPACING[0], lm.y_px * SPACING[1]
    return d


def test_fine_maps_are_kept_and_the_measurements_read_the_combined_map():
    scene = headlessScene()
    volume = makeVolume(scene, np.zeros((SIZE[1], SIZE[0]), dtype=np.float32), SPACING)
    d = refinedDetection()
    assert d.combined.refined.all()
    node = createLandmarksNode(scene, d, volume)
    fine = node.GetNodeReference(FINE_MAPS_REFERENCE)
    assert fine is not None and fine.GetHideFromEditors()
    kept = landmarkCombinedMap(node)
    np.testing.assert_array_equal(kept.fine, d.combined.fine)
    assert kept.crops == d.combined.crops and kept.refined.tolist() == d.combined.refined.tolist()
    np.testing.assert_allclose(kept.points_px, d.combined.points_px)

    # unedited: the detection-time numbers, which are the combined map's, not the coarse map's
    expected = measure_detection(d, n=N)
    got = measureLandmarks(node, n=N)
    assert [r["p95"] for r in got] == [r["p95"] for r in expected]
    d.combined = None
    coarse = measure_corrected(d, n=N)
    assert [r["p95"] for r in got] != [r["p95"] for r in coarse]
    assert reviewedDetection(node, n=N).extra["measurements"]["method"]["method"] == COMBINED_METHOD
    assert cliJson(node, n=N)["measurements"]["method"]["method"] == COMBINED_METHOD

    # detection redone without the second stage: the fine maps go, the coarse maps are read
    plain = syntheticDetection(SIZE, SPACING, seed=3)
    assert createLandmarksNode(scene, plain, volume, node) is node
    assert node.GetNodeReference(FINE_MAPS_REFERENCE) is None and landmarkCombinedMap(node) is None
    assert scene.GetNodeByID(fine.GetID()) is None
    assert [r["p95"] for r in measureLandmarks(node, n=N)] == [r["p95"] for r in measure_detection(plain, n=N)]
    assert cliJson(node, n=N)["measurements"]["method"]["method"] != COMBINED_METHOD


def test_fine_maps_survive_a_saved_scene(tmp_path):
    from CephLandmarksSlicer.record import isLandmarksNode

    scene = headlessScene()
    volume = makeVolume(scene, np.zeros((SIZE[1], SIZE[0]), dtype=np.float32), SPACING)
    d = refinedDetection()
    node = createLandmarksNode(scene, d, volume)
    expected = measureLandmarks(node, n=N)
    assert scene.WriteToMRB(str(tmp_path / "case.mrb"))
    again = headlessScene()
    assert again.ReadFromMRB(str(tmp_path / "case.mrb"))
    loaded = next(n for n in (again.GetNthNodeByClass(i, "vtkMRMLMarkupsFiducialNode")
                              for i in range(again.GetNumberOfNodesByClass("vtkMRMLMarkupsFiducialNode")))
                  if isLandmarksNode(n))
    fine = loaded.GetNodeReference(FINE_MAPS_REFERENCE)
    assert fine is not None and fine.GetHideFromEditors()
    kept = landmarkCombinedMap(loaded)
    assert kept is not None and np.array_equal(kept.fine, d.combined.fine) and kept.crops == d.combined.crops
    assert [r["p95"] for r in measureLandmarks(loaded, n=N)] == pytest.approx([r["p95"] for r in expected], rel=1e-9)
