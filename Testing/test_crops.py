"""Crop frames (imaging/crops.py) and crop sampling (network/crop_inputs.py)."""

import numpy as np
import pytest
import torch

from CephLandmarksLib.imaging.crops import CropFrame, crop_frames
from CephLandmarksLib.network.crop_inputs import sample_crops, supersample_factor


@pytest.mark.parametrize("mirror", [False, True])
def test_crop_frame_round_trip_and_matrix(mirror):
    f = CropFrame((100.3, 57.8), (32, 48), 0.125, (0.1, 0.12), mirror)
    xy = np.array([[100.3, 57.8], [90.3, 60.0], [110.5, 40.25]])
    uv = f.image_to_crop(xy)
    np.testing.assert_allclose(uv[0], [15.5, 23.5])  # the centre sits between the middle pixels
    np.testing.assert_allclose(f.crop_to_image(uv), xy)
    m = f.crop_to_image_matrix()
    np.testing.assert_allclose((np.column_stack([uv, np.ones(3)]) @ m.T)[:, :2], xy)
    # 10 image px along x at 0.1 mm are 8 crop px at 0.125 mm, to the left when mirrored
    assert uv[1, 0] - uv[0, 0] == pytest.approx(8.0 if mirror else -8.0)
    assert CropFrame.from_array(f.to_array()) == f


def test_contains_is_the_crop_pixel_edges():
    f = CropFrame((50.0, 50.0), (16, 16), 0.5, (0.5, 0.5))
    assert f.contains(np.array([50.0, 50.0]))
    assert f.contains(np.array([50.0 + 7.9, 50.0 - 7.9]))
    assert not f.contains(np.array([50.0 + 8.1, 50.0]))


def test_crop_frames_one_per_point():
    frames = crop_frames([[1, 2], [3, 4]], (0.1, 0.1), (64, 64), 0.125, mirror_x=True)
    assert [f.centre_px for f in frames] == [(1.0, 2.0), (3.0, 4.0)]
    assert all(f.mirror_x and f.size == (64, 64) for f in frames)


def test_sample_crops_reads_the_image_at_the_frame():
    h, w = 60, 80
    yy, xx = np.mgrid[0:h, 0:w]
    image = torch.as_tensor(xx + 100.0 * yy, dtype=torch.float32)  # linear: bilinear sampling is exact
    f = CropFrame((40.0, 30.0), (8, 8), 0.5, (0.5, 0.5))  # one crop pixel per image pixel
    crop = sample_crops(image, [f])[0, 0].numpy()
    assert crop.shape == (8, 8)
    xy = f.crop_to_image(np.array([0.0, 0.0]))
    assert crop[0, 0] == pytest.approx(xy[0] + 100 * xy[1], abs=1e-3)
    mirrored = sample_crops(image, [CropFrame((40.0, 30.0), (8, 8), 0.5, (0.5, 0.5), True)])[0, 0].numpy()
    np.testing.assert_allclose(mirrored, crop[:, ::-1], atol=1e-3)


def test_coarser_crops_average_the_image():
    f = CropFrame((40.0, 30.0), (8, 8), 0.25, (0.1, 0.1))  # 2.5 image px per crop px
    assert supersample_factor([f]) == 3
    rng = np.random.default_rng(0)
    noise = torch.as_tensor(rng.normal(size=(60, 80)), dtype=torch.float32)
    # averaging several image pixels per crop pixel shrinks white noise; point sampling would not
    assert sample_crops(noise, [f]).std() < 0.7 * noise.std()


def test_outside_the_image_is_zero():
    image = torch.ones(20, 20)
    crop = sample_crops(image, [CropFrame((0.0, 0.0), (8, 8), 1.0, (1.0, 1.0))])[0, 0]
    assert crop[0, 0] == 0 and crop[-1, -1] == 1
