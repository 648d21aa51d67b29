import numpy as np
import torch

from CephLandmarksLib.text import probability_text
from CephLandmarksLib.uncertainty.measures import (
    credible_contours,
    credible_level,
    error_probability,
    expected_radial_error_mm,
)


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


def test_error_probability_is_the_mass_beyond_the_radius():
    # A map with 0.7 at the point, 0.2 at 3 mm and 0.1 at 5 mm (anisotropic pixels: 0.5 x 1.0 mm).
    p = np.zeros((1, 20, 30))
    p[0, 10, 10] = 0.7
    p[0, 13, 10] = 0.2  # 3 rows below: 3 mm
    p[0, 10, 20] = 0.1  # 10 columns right: 5 mm
    assert error_probability(p, [[10, 10]], (0.5, 1.0), 4.0)[0] == np.float64(0.1).item()
    assert abs(error_probability(p, [[10, 10]], (0.5, 1.0), 2.0)[0] - 0.3) < 1e-12
    assert error_probability(p, [[10, 10]], (0.5, 1.0), 6.0)[0] == 0.0
    # Unlike ERE, faint far pixels count: 100 pixels of 1e-4 (under 5 % of the peak) far away.
    q = np.zeros((1, 40, 40))
    q[0, 0, 0] = 0.99
    q[0, 30:40, 30:40] = 1e-4
    assert abs(error_probability(q, [[0, 0]], (1, 1), 4.0)[0] - 0.01) < 1e-9
    assert expected_radial_error_mm(q, [[0, 0]], (1, 1))[0] == 0.0


def test_probability_text():
    assert [probability_text(p) for p in (0.0004, 0.004, 0.0949, 0.32, float("nan"), None)] == [
        "< 0.1 %", "0.4 %", "9.5 %", "32 %", "", ""]


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
