"""Tail calibration: the per-landmark logit shift of P(error > r) that adapted models show and flag on."""

from dataclasses import replace

import numpy as np
import pytest

from CephLandmarksLib.modelmeta import TAIL_SHIFT_LIMIT
from CephLandmarksLib.tail_calibration import TAIL_RADII_MM, fit_tail_shifts, shifted
from CephLandmarksLib.uncertainty import error_probabilities, error_probability


def _clinic(true_shift, n=600, seed=0):
    """Errors drawn from a known radial law, and maps whose P(error > r) is off by `true_shift` on the
    logit scale (per landmark): what the fit must undo."""
    rng = np.random.default_rng(seed)
    scale = rng.uniform(0.8, 2.5, (n, len(true_shift)))  # each point's own spread, which its map knows
    errors = rng.exponential(scale)
    p_true = np.exp(-np.asarray(TAIL_RADII_MM)[None, None, :] / scale[..., None])  # (n, L, R)
    maps = shifted(p_true.transpose(0, 2, 1), -np.asarray(true_shift)).transpose(0, 2, 1)
    return maps, errors


def test_fit_recovers_each_landmarks_miscalibration():
    true_shift = np.array([-1.2, 0.0, 0.8, 2.0])
    maps, errors = _clinic(true_shift)
    assert fit_tail_shifts(maps, errors) == pytest.approx(true_shift, abs=0.2)


def test_prior_shrinks_a_landmark_with_few_points_and_leaves_missing_points_out():
    maps, errors = _clinic([2.0, 2.0])
    few = fit_tail_shifts(maps[:3], errors[:3])
    many = fit_tail_shifts(maps, errors)
    assert np.all(np.abs(few) < np.abs(many))  # three points move it less than six hundred
    errors[:, 1] = np.nan  # landmark 2 never found: no evidence, no shift
    maps[:5, 0] = np.nan
    a = fit_tail_shifts(maps, errors)
    assert np.isfinite(a).all() and a[1] == 0.0 and a[0] == pytest.approx(many[0], abs=0.05)
    assert np.abs(fit_tail_shifts(np.full((50, 1, 3), 1e-9), np.full((50, 1), 30.0))) <= TAIL_SHIFT_LIMIT


def test_shifted_moves_the_odds_and_keeps_none_and_nan():
    p = np.array([[0.2, 0.02, np.nan]])
    assert shifted(p, None) is not None and np.array_equal(shifted(p, None), p, equal_nan=True)
    out = shifted(p, np.array([np.log(3.0), 0.0, 1.0]))
    assert out[0, 0] / (1 - out[0, 0]) == pytest.approx(3 * 0.2 / 0.8)
    assert out[0, 1] == pytest.approx(0.02) and np.isnan(out[0, 2])


def test_error_probabilities_are_the_mass_beyond_each_radius():
    yy, xx = np.mgrid[0:60, 0:60]
    r = np.hypot(xx - 30, yy - 30)
    p = np.exp(-r)[None]
    p = p / p.sum()
    got = error_probabilities(p, [[30, 30]], [1.0, 1.0], (2.0, 4.0))
    assert got[0] == pytest.approx([p[0][r > 2].sum(), p[0][r > 4].sum()])
    assert got[0, 0] > got[0, 1] and error_probability(p, [[30, 30]], [1.0, 1.0], 4.0)[0] == pytest.approx(got[0, 1])


def test_decide_shows_and_flags_the_tail_calibrated_probability(tiny_model, generic_dataset):
    """A landmark's shift changes its P(error > 4 mm) in the JSON and its flag, and only its own."""
    from CephLandmarksLib.detect import LandmarkDetector
    from CephLandmarksLib.images import read_radiograph

    det = LandmarkDetector(tiny_model)
    obs = det.observe(read_radiograph(generic_dataset / "img00.png", 0.5))
    plain = det.decide(obs, contours=False)
    p = np.array([lm.p_large_error for lm in plain.landmarks])
    low = int(np.argmax(p))  # the most uncertain landmark, pushed down
    shift = np.zeros(19)
    shift[low] = -TAIL_SHIFT_LIMIT
    moved = det.decide(obs, replace(det.settings, p_large_logit_shift=shift), contours=False)
    q = np.array([lm.p_large_error for lm in moved.landmarks])
    assert q[low] == pytest.approx(shifted(p[low], -TAIL_SHIFT_LIMIT)) and q[low] < p[low] - 0.1
    assert np.delete(q, low) == pytest.approx(np.delete(p, low))
    assert moved.to_json_dict()["landmarks"][low]["p_large_error"] == pytest.approx(q[low], abs=1e-6)
    s = replace(det.settings, flag_p_large_min=(p[low] + q[low]) / 2)
    assert "uncertain" in det.decide(obs, s, contours=False).landmarks[low].flag_reasons
    flagged = det.decide(obs, replace(s, p_large_logit_shift=shift), contours=False)
    assert "uncertain" not in flagged.landmarks[low].flag_reasons
    assert np.array_equal(moved.p_beyond, plain.p_beyond)  # the maps' own, what adaptation fits on
