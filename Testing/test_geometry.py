import numpy as np
import torch

from CephLandmarksLib.imaging.geometry import ModelFrame, ijk_to_ras, px_to_lps, px_to_mm, ras_to_ijk
from CephLandmarksLib.network.inputs import to_model_input


def test_fit_keeps_aspect_and_pads_right_bottom():
    f = ModelFrame.fit((1935, 2400), (320, 416))
    assert f.scaled_size == (320, 397)
    assert abs(f.scale[0] - f.scale[1]) < 0.002  # aspect ratio kept within rounding


def test_image_model_round_trip():
    f = ModelFrame((1935, 2400), (320, 416), (320, 397), (3, 5))
    xy = np.random.default_rng(0).uniform(0, 1900, size=(50, 2))
    np.testing.assert_allclose(f.model_to_image(f.image_to_model(xy)), xy, atol=1e-9)


def test_pixel_edges_map_to_edges():
    # The image's outer edges (-0.5 and W-0.5) land on the scaled image's edges.
    f = ModelFrame.fit((200, 100), (64, 64))
    np.testing.assert_allclose(f.image_to_model([[-0.5, -0.5]]), [[-0.5, -0.5]])
    np.testing.assert_allclose(f.image_to_model([[199.5, 99.5]]), [[63.5, 31.5]])


def test_model_pixel_mm():
    f = ModelFrame.fit((1000, 1250), (320, 400))
    np.testing.assert_allclose(f.model_pixel_mm((0.1, 0.1)), [0.3125, 0.3125])


def test_resized_image_puts_a_bright_pixel_where_the_mapping_says():
    img = np.zeros((250, 200), np.float32)
    img[120:125, 60:65] = 1.0  # a 5 x 5 square centred on (62, 122)
    f = ModelFrame.fit((200, 250), (64, 96))
    x = to_model_input(img, f)[0]
    v, u = np.unravel_index(torch.argmax(x).item(), x.shape)
    np.testing.assert_allclose([u, v], f.image_to_model([62, 122]), atol=0.6)
    assert x[f.scaled_size[1]:].abs().max() == 0  # padding below the image


def test_mm_lps_ras():
    sp = (0.2, 0.3)
    np.testing.assert_allclose(px_to_mm([[10, 20]], sp), [[2.0, 6.0]])
    direction = np.array([[0, 1, 0], [1, 0, 0], [0, 0, -1]], float)
    lps = px_to_lps([[10, 20]], sp, (5, 6, 7), direction.ravel())
    np.testing.assert_allclose(lps, [[5 + 6.0, 6 + 2.0, 7]])
    m = np.array([[-0.2, 0, 0, 10], [0, -0.3, 0, 20], [0, 0, 1, 0], [0, 0, 0, 1]])
    ras = ijk_to_ras([[3, 4]], m)
    np.testing.assert_allclose(ras, [[10 - 0.6, 20 - 1.2, 0]])
    np.testing.assert_allclose(ras_to_ijk(ras, m)[:, :2], [[3, 4]])


def test_model_to_image_matrix_matches_the_point_mapping():
    uv = np.random.default_rng(0).uniform(0, 100, (7, 2))
    for frame in (ModelFrame.fit((1935, 2400), (96, 128)),
                  ModelFrame.physical((1500, 1800), (0.12, 0.1), (96, 128), 2.0, mirror_x=True)):
        m = frame.model_to_image_matrix()
        xy = (m @ np.column_stack([uv, np.ones(len(uv))]).T).T[:, :2]
        np.testing.assert_allclose(xy, frame.model_to_image(uv), atol=1e-9)
