import numpy as np
import torch

from CephLandmarksLib.uncertainty import credible_contours, credible_level, expected_radial_error_mm


def ere_reference(p, point, mm):
    """Direct per-pixel loop, as the paper's code does it."""
    m = p.max()
    total, acc = 0.0, 0.0
    for y in range(p.shape[0]):
        for x in range(p.shape[1]):
            if p[y, x] >= 0.05 * m:
                total += p[y, x]
                acc += p[y, x] * np.hypot((x - point[0]) * mm[0], (y - point[1]) * mm[1])
    return acc / total


def test_ere_matches_a_per_pixel_loop():
    rng = np.random.default_rng(1)
    probs = torch.softmax(torch.as_tensor(rng.normal(0, 2, (3, 17 * 13))), -1).reshape(3, 17, 13).numpy()
    pts = rng.uniform(0, 12, (3, 2))
    mm = (0.3, 0.45)
    fast = expected_radial_error_mm(probs, pts, mm)
    slow = [ere_reference(probs[i], pts[i], mm) for i in range(3)]
    np.testing.assert_allclose(fast, slow, rtol=1e-10)


def test_ere_of_a_delta_is_zero_and_grows_with_spread():
    p = np.zeros((1, 9, 9))
    p[0, 4, 4] = 1
    assert expected_radial_error_mm(p, [[4, 4]], (1, 1))[0] == 0
    yy, xx = np.mgrid[:41, :41]
    narrow = np.exp(-((xx - 20) ** 2 + (yy - 20) ** 2) / 2 / 1.0**2)
    wide = np.exp(-((xx - 20) ** 2 + (yy - 20) ** 2) / 2 / 3.0**2)
    e = expected_radial_error_mm(np.stack([narrow / narrow.sum(), wide / wide.sum()]), [[20, 20]] * 2, (0.5, 0.5))
    assert 0 < e[0] < e[1]


def test_credible_level_holds_the_mass():
    rng = np.random.default_rng(2)
    p = rng.random((30, 30)) ** 4
    p /= p.sum()
    for mass in (0.5, 0.9):
        t = credible_level(p, mass)
        inside = p[p > t]
        assert inside.sum() >= mass - 1e-9
        assert inside.sum() - inside.min() < mass  # smallest: dropping its weakest pixel loses the mass


def test_contours_of_a_gaussian_are_circles_of_the_right_radius():
    yy, xx = np.mgrid[:81, :81]
    sigma = 5.0
    p = np.exp(-((xx - 40.0) ** 2 + (yy - 33.0) ** 2) / (2 * sigma**2))
    p /= p.sum()
    c = credible_contours(p, (0.5, 0.9))
    for key, mass in (("50", 0.5), ("90", 0.9)):
        assert len(c[key]) == 1
        line = c[key][0]
        r = np.hypot(line[:, 0] - 40, line[:, 1] - 33)
        expected = sigma * np.sqrt(-2 * np.log(1 - mass))  # radius holding `mass` of a 2D Gaussian
        assert abs(r.mean() - expected) < 0.6 and r.std() < 0.4
