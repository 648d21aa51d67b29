"""The second stage at detection (detection/refinement.py) and its file (store/refinerfile.py)."""

import numpy as np
import pytest
import torch

from CephLandmarksLib.detection import combined_map as cmap
from CephLandmarksLib.detection.refinement import fine_probs, refine
from CephLandmarksLib.errors import CephError
from CephLandmarksLib.imaging.crops import crop_frames
from CephLandmarksLib.imaging.geometry import ModelFrame
from CephLandmarksLib.network.refiner import RefinerNet
from CephLandmarksLib.store.refinerfile import LoadedRefiner, RefinerInfo, load_refiner, save_refiner

ABBREVIATIONS = [f"L{i}" for i in range(19)]


def small_refiner(seed=0) -> LoadedRefiner:
    torch.manual_seed(seed)
    net = RefinerNet(19, (8, 16, 16, 16)).eval()
    return LoadedRefiner(net, RefinerInfo(ABBREVIATIONS, crop_size=32, crop_mm_per_px=0.25, channels=[8, 16, 16, 16],
                                          temperatures=[1.5] * 19), "", "")


def test_refiner_network_gives_one_map_per_crop():
    out = RefinerNet(19, (8, 16, 16, 16))(torch.randn(5, 1, 32, 32), torch.tensor([0, 3, 3, 18, 7]))
    assert out.shape == (5, 32, 32)


def test_fine_maps_put_no_mass_outside_the_image():
    image = np.random.default_rng(0).random((100, 120)).astype(np.float32)
    crops = crop_frames(np.tile([[2.0, 3.0]], (19, 1)), (0.5, 0.5), (32, 32), 0.25)  # mostly off the image
    q = fine_probs(small_refiner(), image, crops)
    assert q.shape == (19, 32, 32)
    np.testing.assert_allclose(q.sum((1, 2)).numpy(), 1.0, atol=1e-5)
    inside = crops[0].contains(np.array([0.0, 0.0]))
    assert inside and float(q[:, :10, :10].sum()) < 1e-6  # the crop's top-left corner lies off the image


def test_refine_builds_a_combined_map_that_sums_to_one():
    rng = np.random.default_rng(1)
    image = rng.random((120, 96)).astype(np.float32)
    frame = ModelFrame.fit((96, 120), (48, 60))  # 2 image px per coarse pixel
    points = np.column_stack([rng.uniform(20, 76, 19), rng.uniform(20, 100, 19)])
    uv = frame.image_to_model(points)
    yy, xx = np.mgrid[0:60, 0:48]
    coarse = np.stack([np.exp(-((xx - u) ** 2 + (yy - v) ** 2) / 2.0) for u, v in uv])
    coarse /= coarse.sum((1, 2), keepdims=True)
    cm = refine(small_refiner(), image, (0.5, 0.5), coarse, frame.model_to_image_matrix(), points)
    assert cm.refined.all()  # sharp coarse maps: all their mass lies in the 8 mm crops
    for i in range(19):
        _, mass, _ = cmap.cells(cm, i)
        assert mass.sum() == pytest.approx(1.0, abs=1e-4)
        assert cm.crops[i].contains(cm.points_px[i])


def test_refiner_file_round_trip_and_damage(tmp_path):
    ref = small_refiner()
    path = tmp_path / "r.safetensors"
    save_refiner(path, ref.net, ref.info)
    back = load_refiner(path)
    assert back.info.crop_size == 32 and back.info.temperatures == [1.5] * 19
    x, lm = torch.randn(2, 1, 32, 32), torch.tensor([1, 2])
    with torch.no_grad():
        np.testing.assert_allclose(back.net(x, lm).numpy(), ref.net(x, lm).numpy(), atol=0.05)  # float16 weights
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF  # one byte of the weights
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(bytes(data))
    with pytest.raises(CephError, match="checksum|not a readable"):
        load_refiner(bad)
    with pytest.raises(CephError, match="not found"):
        load_refiner(tmp_path / "none.safetensors")
