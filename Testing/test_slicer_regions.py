"""Slicer's region models follow the region rule (uncertainty/regions.py): a "90 %" region that is not
localised is not drawn, its point gets a dashed ring, and the ring is not read back as a region."""

import numpy as np
import pytest

slicer = pytest.importorskip("slicer")
if not hasattr(slicer, "vtkMRMLScene"):
    pytest.skip("slicer-core (MRML) is not installed", allow_module_level=True)

from slicer_fixtures import headlessScene, makeVolume, syntheticDetection  # noqa: E402

from CephLandmarksSlicer.contours import RING_DASHES, contoursFromModels, createContourModels  # noqa: E402
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
