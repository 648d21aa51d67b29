"""ERE, P(error > 4 mm) and the region's extent read only the pixels that count (issue 28: detection
within twice the network's time); they must give the values of the whole-map computations they
replaced (measures._ere_full, _error_probability_full, _region_extent_full): the extent exactly,
ERE and P to float precision."""

import numpy as np
import pytest
import torch

from CephLandmarksLib.uncertainty import measures as M


def _maps(rng, kind, n, h, w, dtype):
    if kind == "uniform":
        p = rng.random((n, h, w))
    elif kind == "heavy tails":
        p = np.exp(-rng.random((n, h, w)) * 30)
    elif kind == "flat":
        p = np.ones((n, h, w))
    else:  # peaked, as the network's: a Gaussian of random width and place, and a faint second mode
        yy, xx = np.mgrid[:h, :w]
        p = np.stack([np.exp(-((xx - rng.uniform(0, w)) ** 2 + (yy - rng.uniform(0, h)) ** 2) / rng.uniform(0.3, 60))
                      + 1e-3 * np.exp(-((xx - rng.uniform(0, w)) ** 2 + (yy - rng.uniform(0, h)) ** 2) / 20)
                      for _ in range(n)])
    return (p / p.sum(axis=(1, 2), keepdims=True)).astype(dtype)


CASES = [(kind, dtype, seed) for kind in ("uniform", "heavy tails", "flat", "peaked")
         for dtype in (np.float32, np.float64) for seed in range(6)]


@pytest.mark.parametrize("kind,dtype,seed", CASES)
def test_fast_measures_equal_the_whole_map_ones(kind, dtype, seed):
    rng = np.random.default_rng(seed)
    n, h, w = 4, int(rng.integers(3, 70)), int(rng.integers(3, 70))
    p = _maps(rng, kind, n, h, w, dtype)
    pts = np.stack([rng.uniform(-2, w + 1, n), rng.uniform(-2, h + 1, n)], 1)  # points off the map too
    pts[0] = np.unravel_index(np.argmax(p[0]), p[0].shape)[::-1]  # one on its pixel: distances exactly 0
    mm = rng.uniform(0.05, 1.2, 2)
    for probs in (p, torch.as_tensor(p)):
        np.testing.assert_allclose(M.expected_radial_error_mm(probs, pts, mm), M._ere_full(probs, pts, mm),
                                   rtol=1e-12, atol=1e-300)
        for r in (0.3, 2.1, 4.0, 15.0, 100.0):
            fast, full = M.error_probability(probs, pts, mm, r), M._error_probability_full(probs, pts, mm, r)
            np.testing.assert_allclose(fast, full, rtol=1e-12, atol=1e-17)
    for i in range(n):
        for mass in (0.2, 0.5, 0.9, 0.981112, 0.999, 0.9999999, 1.0):
            assert M.region_extent(p[i], mass, pts[i], mm) == M._region_extent_full(p[i], mass, pts[i], mm)


def test_on_a_real_shaped_map_the_bounds_and_the_fall_back():
    """A network-sized (480 x 384) peaked map with a faint plateau holding 5 % of the mass: a "90 %"
    region is read from the head above 1e-3 of the maximum, a 99.99 % one needs the whole map."""
    rng = np.random.default_rng(7)
    yy, xx = np.mgrid[:480, :384]
    peak = np.exp(-((xx - 200.3) ** 2 + (yy - 150.8) ** 2) / 6.0)
    p = 0.95 * peak / peak.sum() + 0.05 * rng.random((480, 384)) / (480 * 384 / 2)
    p = (p / p.sum()).astype(np.float32)[None]
    pts = np.array([[200.4, 150.6]])
    mm = (0.5, 0.5)
    np.testing.assert_allclose(M.expected_radial_error_mm(p, pts, mm), M._ere_full(p, pts, mm), rtol=1e-12)
    np.testing.assert_allclose(M.error_probability(p, pts, mm), M._error_probability_full(p, pts, mm), rtol=1e-12)
    for mass in (0.5, 0.9, 0.97, 0.9999):
        assert M.region_extent(p[0], mass, pts[0], mm) == M._region_extent_full(p[0], mass, pts[0], mm)


def test_tiny_mass_beyond_keeps_its_relative_precision():
    """P(error > r) of 1e-12 is summed, not 1 - the mass within (which would leave ~1e-16 noise)."""
    p = np.zeros((1, 50, 50))
    p[0, 25, 25] = 1.0
    p[0, 0, 0] = 1e-12
    got = M.error_probability(p, [[25, 25]], (1, 1), 4.0)[0]
    assert got == pytest.approx(1e-12 / (1 + 1e-12), rel=1e-12)
