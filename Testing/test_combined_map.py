"""The combined coarse + fine map (detection/combined_map.py) and the weighted-cell measures
(uncertainty/weighted.py)."""

import numpy as np
import pytest
import torch

from CephLandmarksLib.detection import combined_map as cmap
from CephLandmarksLib.imaging.crops import crop_frames
from CephLandmarksLib.imaging.geometry import ModelFrame
from CephLandmarksLib.uncertainty import weighted
from CephLandmarksLib.uncertainty.measures import error_probability, expected_radial_error_mm

SPACING = (0.1, 0.1)
FRAME = ModelFrame.fit((400, 400), (80, 80))  # 5 image px (0.5 mm) per coarse pixel
M2I = FRAME.model_to_image_matrix()


def gaussian(shape, centre, sigma):
    h, w = shape
    yy, xx = np.mgrid[0:h, 0:w]
    g = np.exp(-((xx - centre[0]) ** 2 + (yy - centre[1]) ** 2) / (2 * sigma**2))
    return g / g.sum()


def two_landmarks(second_mode_mass=0.0):
    """Coarse maps: landmark 0 a tight blob at model (40, 40); landmark 1 the same with part of
    its mass far away.  Fine maps: a blob at crop (20, 12) for both."""
    near = gaussian((80, 80), (40, 40), 1.5)
    far = gaussian((80, 80), (10, 70), 1.5)
    coarse = np.stack([near, (1 - second_mode_mass) * near + second_mode_mass * far])
    points = np.stack([FRAME.model_to_image(np.array([40.0, 40.0]))] * 2)
    crops = crop_frames(points, SPACING, (32, 32), 0.125)  # 4 mm crops
    fine = np.stack([gaussian((32, 32), (20, 12), 1.0)] * 2)
    return cmap.combine(coarse, M2I, SPACING, fine, crops, points)


def test_combined_map_sums_to_one_and_takes_the_fine_point():
    cm = two_landmarks(second_mode_mass=0.3)
    for i in range(2):
        _, mass, _ = cmap.cells(cm, i)
        assert mass.sum() == pytest.approx(1.0, abs=1e-5)
    assert cm.refined.tolist() == [True, True]  # 70 % of landmark 1's coarse mass is inside its crop
    assert cm.inside_mass[1] == pytest.approx(0.7 * cm.inside_mass[0], rel=1e-3)
    np.testing.assert_allclose(cm.points_px[0], cm.crops[0].crop_to_image(np.array([20.0, 12.0])), atol=0.05)


def test_mass_mostly_outside_keeps_the_coarse_point_and_flags_it():
    cm = two_landmarks(second_mode_mass=0.6)
    assert cm.refined.tolist() == [True, False]
    np.testing.assert_allclose(cm.points_px[1], cm.crops[1].centre_px)
    assert cm.flags == [[], [cmap.FLAG_OUTSIDE_CROP]]


def test_error_probability_reads_the_far_mode():
    cm = two_landmarks(second_mode_mass=0.3)
    p = cmap.error_probability(cm, 4.0)
    assert p[0] == pytest.approx(0.0, abs=1e-3)
    assert p[1] == pytest.approx(0.3, abs=0.01)  # the far blob is ~21 mm away
    ere = cmap.ere_mm(cm)
    assert ere[0] < 0.3  # a sharp fine blob at the point
    # the far coarse blob's density is under 5 % of the fine peak's: ERE drops it (as the paper drops faint
    # pixels), P(error > 4 mm) above counts it
    assert ere[1] == pytest.approx(ere[0], rel=1e-9)


def test_region_scores_are_small_at_the_peak_and_large_far_away():
    cm = two_landmarks(second_mode_mass=0.3)
    near = cmap.region_scores(cm, cm.points_px)
    far = cmap.region_scores(cm, [FRAME.model_to_image(np.array([10.0, 70.0])), FRAME.model_to_image([0.0, 0.0])])
    for i in range(2):  # the truth at the peak: the smallest region holding it is the peak cell alone
        assert near[i] == pytest.approx(cmap.cells(cm, i)[1].max(), rel=1e-4)
    assert far[0] == pytest.approx(1.0) and far[1] > 0.95


def test_weighted_measures_match_the_single_grid_ones():
    """On one uniform grid the cell measures are measures.py's."""
    probs = np.stack([gaussian((30, 40), (12.3, 17.8), 2.0), gaussian((30, 40), (30.0, 5.0), 4.0)])
    point = np.array([[12.0, 18.0], [29.0, 6.0]])
    mm = np.array([0.4, 0.4])
    yy, xx = np.mgrid[0:30, 0:40]
    pos = np.stack([xx.ravel(), yy.ravel()], -1) * mm
    area = np.full(pos.shape[0], 0.16)
    ere = expected_radial_error_mm(torch.as_tensor(probs), point, mm)
    p2 = error_probability(torch.as_tensor(probs), point, mm, 2.1)  # 2.1: no cell exactly on the circle
    for i in range(2):
        assert weighted.ere_mm(pos, probs[i].ravel(), area, point[i] * mm) == pytest.approx(ere[i], rel=1e-6)
        assert weighted.error_probability(pos, probs[i].ravel(), point[i] * mm, 2.1) == pytest.approx(p2[i])


def test_region_density_holds_the_asked_mass():
    rng = np.random.default_rng(1)
    mass = rng.random(500)
    mass /= mass.sum()
    area = rng.choice([0.25, 0.015625], 500)
    t = weighted.region_density(mass, area, 0.9)
    held = mass[weighted.densities(mass, area) > t].sum()
    assert 0.9 <= held < 0.9 + mass.max() + 1e-9


def test_npz_round_trip(tmp_path):
    cm = two_landmarks(second_mode_mass=0.6)
    path = tmp_path / "x.heatmaps.npz"
    cmap.save_npz(path, cm)
    back = cmap.load_npz(path)
    np.testing.assert_allclose(back.points_px, cm.points_px)
    assert back.crops == cm.crops and back.refined.tolist() == cm.refined.tolist()
    np.testing.assert_allclose(cmap.ere_mm(back), cmap.ere_mm(cm), rtol=1e-5)


def test_load_npz_refuses_another_format(tmp_path):
    path = tmp_path / "old.npz"
    np.savez(path, probs=np.zeros((1, 2, 2)))
    with pytest.raises(ValueError, match="not a combined heatmaps file"):
        cmap.load_npz(path)


@pytest.mark.parametrize("mirror", [False, True])
def test_inside_mask_splits_by_axes_as_the_full_test_does(mirror):
    frame = ModelFrame.physical((400, 300), (0.1, 0.1), (96, 64), 0.5, mirror_x=mirror)
    m = frame.model_to_image_matrix()
    crop = crop_frames([[123.4, 210.7]], SPACING, (40, 24), 0.125, mirror)[0]
    full = crop.contains(cmap.coarse_centres_px((64, 96), m))
    assert full.any()
    np.testing.assert_array_equal(cmap.inside_mask((64, 96), m, crop), full)


def test_samples_follow_the_combined_map():
    cm = two_landmarks(second_mode_mass=0.3)
    pts = cmap.sample_points_px(cm, 1, 4000, np.random.default_rng(0))
    far = np.hypot(*((pts - cm.points_px[1]) * SPACING).T) > 4.0
    assert far.mean() == pytest.approx(0.3, abs=0.03)  # the far mode's share
    near = pts[~far]
    assert np.hypot(*((near - cm.points_px[1]) * SPACING).T).mean() < 0.3  # drawn from the sharp fine map


def test_contours_enclose_the_point_at_the_fine_resolution():
    cm = two_landmarks(second_mode_mass=0.0)
    lines = cmap.drawn_contours(cm, 0, {"90": 0.9})[0]["90"]
    assert lines
    from matplotlib.path import Path as MplPath

    assert any(MplPath(line).contains_point(cm.points_px[0]) for line in lines)
    reach_mm = max(np.hypot(*((line - cm.points_px[0]) * SPACING).T).max() for line in lines)
    assert reach_mm < 0.5  # the fine map's 90 % region (sigma 0.125 mm), not the coarse one's (0.75 mm)


@pytest.mark.parametrize("mirror", [False, True])
def test_grid_measures_equal_the_cell_definitions(mirror):
    """ERE, P(error > r), the region's density, area and reach read on the two grids are `cells`' ones."""
    rng = np.random.default_rng(5)
    frame = ModelFrame.physical((400, 300), (0.1, 0.1), (96, 64), 0.5, mirror_x=mirror)
    m2i = frame.model_to_image_matrix()
    coarse = np.stack([0.7 * gaussian((64, 96), (40, 30), 2.0) + 0.3 * gaussian((64, 96), (80, 10), 3.0),
                       gaussian((64, 96), (20, 50), 6.0)]) + 1e-9
    points = frame.model_to_image(np.array([[40.3, 29.6], [21.0, 49.0]]))
    crops = crop_frames(points, SPACING, (40, 24), 0.125, mirror)
    fine = rng.random((2, 24, 40)) ** 8
    cm = cmap.combine(coarse, m2i, SPACING, fine, crops, points, min_inside_mass=0.0)
    at = cm.points_px + rng.normal(0, 20, (2, 2))  # any point, not only the map's own
    ere, p = cmap.ere_and_p_large(cm, at, radius_mm=2.7)
    for i in range(2):
        pos, mass, area = cmap.cells(cm, i)
        assert ere[i] == pytest.approx(weighted.ere_mm(pos, mass, area, at[i] * SPACING), rel=1e-9)
        assert p[i] == pytest.approx(weighted.error_probability(pos, mass, at[i] * SPACING, 2.7), abs=1e-9)
        for level in (0.5, 0.9):
            t = weighted.region_density(mass, area, level)
            assert cmap._region_density(cmap.grids(cm, i), level) == pytest.approx(t, rel=1e-12)
            inside = weighted.densities(mass, area) > t
            reach = np.hypot(*(pos[inside] - at[i] * SPACING).T).max()
            assert cmap.region_extent(cm, i, level, at[i]) == pytest.approx((area[inside].sum(), reach), rel=1e-9)


def test_shifted_moves_the_whole_distribution():
    cm = two_landmarks(second_mode_mass=0.3)
    moved = cmap.shifted(cm, cm.coarse, [[3.0, -2.0], [0.0, 0.0]])
    np.testing.assert_allclose(moved.points_px[0], cm.points_px[0] + [3.0, -2.0])
    assert moved.crops[0].centre_px == pytest.approx(np.add(cm.crops[0].centre_px, [3.0, -2.0]))
    assert moved.crops[1] == cm.crops[1] and cm.points_px[0] is not moved.points_px[0]
    # the fine part moved with its point: the sharp fine mass still sits at it
    assert cmap.ere_mm(moved)[0] < 0.3


def test_small_fragments_of_a_drawn_region_are_dropped_and_their_mass_reported():
    """The region rule of uncertainty/regions.py on the two grids: a part of the region holding
    under 2 % of its mass is left out (its mass reported), one touching the crop is kept (it
    continues the fine grid's region), the heaviest part always."""
    coarse = np.zeros((40, 40))
    coarse[5:7, 5:7] = 0.01 / 4  # a far fragment: 1 % of the region
    coarse[20:22, 14:16] = 0.005 / 4  # a small part beside the crop
    fine = np.zeros((16, 16))
    fine[6:10, 6:10] = 0.985 / 16
    crop = np.zeros((40, 40), dtype=bool)
    crop[16:26, 16:26] = True
    edge = np.zeros((40, 40), dtype=bool)
    edge[15:27, 15:27] = True
    edge &= ~crop
    g = [(coarse, 1.0, np.eye(3)), (fine, 1.0, np.eye(3))]
    keep, dropped = cmap._kept_parts(g, 1e-6, edge)
    assert dropped == pytest.approx(0.01)
    assert not keep[0][5:7, 5:7].any() and keep[0][20:22, 14:16].all() and keep[1][6:10, 6:10].all()
    keep, dropped = cmap._kept_parts(g, 1e-6, np.zeros((40, 40), dtype=bool))
    assert dropped == pytest.approx(0.015)  # without the crop beside it, the small part goes too


def test_drawn_contours_keep_a_far_mode_that_holds_real_mass():
    cm = two_landmarks(second_mode_mass=0.3)
    lines, dropped = cmap.drawn_contours(cm, 1, {"90": 0.9})
    assert dropped == {"90": 0.0}
    far = cm.crops[1].centre_px + np.array([-150.0, 150.0])  # the far blob, model (10, 70) -> image px
    assert min(np.hypot(*(line - far).T).min() for line in lines["90"]) < 20
