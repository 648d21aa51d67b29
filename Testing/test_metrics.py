import math

import numpy as np
import pytest
import torch

from CephLandmarksLib.network.heatmaps import heatmap_nll
from CephLandmarksLib.training.calibration import ere_threshold, fit_temperatures
from CephLandmarksLib.training.metrics import (
    UNIFORM_BIN_EDGES,
    grouped_correlation,
    hits,
    radial_errors_mm,
    reliability,
    roc_curve,
    sdr_percent,
    threshold_at_tpr,
)


def test_ece_hand_computed():
    # Bin 0.9: confidences 0.9, 0.9, accuracy 1/2 -> gap 0.4; bin 0.3: confidence 0.3, accuracy 0 -> 0.3.
    r = reliability([0.9, 0.9, 0.3], [1, 0, 0], UNIFORM_BIN_EDGES)
    assert r["ece"] == pytest.approx(100 * (2 / 3 * 0.4 + 1 / 3 * 0.3))
    assert r["counts"][8] == 2 and r["counts"][2] == 1  # 0.9 falls in (0.8, 0.9], 0.3 in (0.2, 0.3]


def test_paper_bins_are_fine_below_0135_and_open_above():
    # 0.01 -> first bin (0, 0.015]; 0.02 -> (0.015, 0.03]; 0.14 and 0.9 share the last bin (0.135, 1].
    r = reliability([0.01, 0.02, 0.14, 0.9], [0, 1, 1, 0])
    assert len(r["counts"]) == 10 and r["counts"][0] == 1 and r["counts"][1] == 1 and r["counts"][9] == 2
    last_gap = abs(0.5 - (0.14 + 0.9) / 2)
    assert r["ece"] == pytest.approx(100 * (0.01 + 0.98 + 2 * last_gap) / 4)


def test_hit_is_within_one_pixel_area_of_the_truth():
    peak = np.array([[[10, 10], [10, 10], [10, 10]]])
    true = np.array([[[10.3, 10.3], [10.5, 10.0], [10.45, 10.45]]])  # 0.42, 0.5 and 0.64 px away
    assert hits(peak, true).tolist() == [[True, True, False]]


def test_ece_perfect_and_empty_bins_never_nan():
    r = reliability([1.0, 1.0, 0.0], [1, 1, 0])
    assert r["ece"] == 0.0
    assert not any(math.isnan(v) for v in r["accuracy"] + r["confidence"])
    assert reliability([], [])["ece"] == 0.0


def test_radial_errors_and_sdr():
    e = radial_errors_mm([[[3, 4]], [[0, 0]]], [[[0, 0]], [[0, 0]]], [[0.5, 0.5], [1, 1]])
    np.testing.assert_allclose(e, [[2.5], [0.0]])
    assert sdr_percent([1.0, 2.0, 2.4, 5.0]) == {"2.0": 50.0, "2.5": 75.0, "3.0": 75.0, "4.0": 75.0}


def test_roc_auc_known_cases():
    assert roc_curve([0.9, 0.8, 0.2, 0.1], [1, 1, 0, 0])[3] == pytest.approx(1.0)
    assert roc_curve([0.1, 0.2, 0.8, 0.9], [1, 1, 0, 0])[3] == pytest.approx(0.0)
    assert roc_curve([0.5, 0.5, 0.5, 0.5], [1, 0, 1, 0])[3] == pytest.approx(0.5)  # ties count half
    assert threshold_at_tpr([0.9, 0.8, 0.7, 0.2, 0.1], [1, 1, 0, 1, 0], 2 / 3) == 0.8
    assert threshold_at_tpr([0.9, 0.8, 0.7, 0.2, 0.1], [1, 1, 0, 1, 0], 1.0) == 0.2


def test_grouped_correlation():
    ere = np.arange(72.0)
    r, means = grouped_correlation(ere, 2 * ere + 1)
    assert means.shape == (2, 2) and r == pytest.approx(1.0)
    assert math.isnan(grouped_correlation(ere[:40], ere[:40])[0])  # fewer than two groups


def test_ere_threshold_catches_the_requested_share():
    rng = np.random.default_rng(0)
    ere = rng.uniform(0, 3, 500)
    err = ere * 2 + rng.normal(0, 0.5, 500)
    t = ere_threshold(ere, err, 3.0, 0.8)
    assert np.mean(ere[err > 3.0] >= t) >= 0.8


def _overconfident_logits(n, rng, h=24, w=24, n_maps=3, true_t=3.0):
    """Logits whose correct temperature is true_t: targets are sampled from softmax(z / true_t)."""
    z = torch.as_tensor(rng.normal(0, 1, (n, n_maps, h * w)) * 4, dtype=torch.float32)
    p = torch.softmax(z / true_t, -1)
    flat = torch.multinomial(p.reshape(-1, h * w), 1).reshape(n, n_maps)
    uv = torch.stack([(flat % w).float(), (flat // w).float()], -1)
    return z.reshape(n, n_maps, h, w), uv


def test_temperature_fit_recovers_the_truth_and_lowers_heldout_nll():
    rng = np.random.default_rng(0)
    z_fit, uv_fit = _overconfident_logits(300, rng)
    z_new, uv_new = _overconfident_logits(300, rng)
    t = fit_temperatures(z_fit, uv_fit)
    assert t.shape == (3,) and (t > 0).all()
    np.testing.assert_allclose(t.numpy(), 3.0, rtol=0.2)
    assert heatmap_nll(z_new, uv_new, t) < heatmap_nll(z_new, uv_new) - 0.1


def test_temperature_fit_keeps_one_where_the_loss_is_flat():
    """An untrained model's near-uniform maps give a nearly flat NLL: the fit must neither overflow
    (L-BFGS extrapolating huge steps) nor drift to the range's edges; such landmarks keep T = 1, while a
    landmark with a real miscalibration beside them is still fitted."""
    rng = np.random.default_rng(0)
    z, uv = _overconfident_logits(40, rng)
    z[:, :2] = torch.as_tensor(rng.normal(0, 1e-3, (40, 2, 24, 24)), dtype=torch.float32)  # two flat maps
    t = fit_temperatures(z, uv)
    assert t[0] == 1.0 and t[1] == 1.0
    assert t[2] > 1.5  # the overconfident one (true temperature 3)
