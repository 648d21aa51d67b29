import numpy as np
import torch

from CephLandmarksLib.network.heatmaps import (
    argmax_2d,
    bilinear_target,
    decode_points,
    heatmap_nll,
    log_softmax_2d,
    refine_subpixel,
    softmax_2d,
)


def test_softmax_is_over_the_whole_map():
    p = softmax_2d(torch.randn(2, 3, 5, 7))
    np.testing.assert_allclose(p.sum((-1, -2)).numpy(), 1.0, atol=1e-5)


def test_bilinear_target_is_not_floored():
    uv = torch.tensor([[[2.25, 3.75]]])
    idx, w, valid = bilinear_target(uv, 6, 5)
    assert valid.all()
    np.testing.assert_allclose(w.sum(-1).numpy(), 1.0)
    # The expected position under the target is the point itself.
    xs, ys = (idx % 5).float(), (idx // 5).float()
    np.testing.assert_allclose([(w * xs).sum().item(), (w * ys).sum().item()], [2.25, 3.75], atol=1e-6)


def test_points_outside_the_map_carry_no_loss():
    logits = torch.randn(1, 2, 8, 8)
    uv = torch.tensor([[[3.0, 3.0], [-4.0, 2.0]]])
    per = heatmap_nll(logits, uv, reduce=False)
    assert per[0, 1] == 0 and per[0, 0] > 0
    assert torch.isclose(heatmap_nll(logits, uv), per[0, 0])


def test_nll_matches_hand_computation():
    logits = torch.randn(1, 1, 4, 4)
    logp = log_softmax_2d(logits)[0, 0]
    uv = torch.tensor([[[1.5, 2.0]]])
    expected = -(0.5 * logp[2, 1] + 0.5 * logp[2, 2])
    assert torch.isclose(heatmap_nll(logits, uv), expected, atol=1e-6)


def test_temperature_does_not_move_the_argmax():
    logits = torch.randn(1, 4, 9, 9)
    t = torch.tensor([0.5, 1.0, 2.0, 5.0])
    assert torch.equal(argmax_2d(softmax_2d(logits)), argmax_2d(softmax_2d(logits, t)))


def test_subpixel_refinement_recovers_a_bilinear_split_point():
    h = w = 20
    uv = torch.tensor([[[7.3, 11.8]]])
    idx, wts, _ = bilinear_target(uv, h, w)
    probs = torch.zeros(1, 1, h * w).scatter_add_(-1, idx, wts).reshape(1, 1, h, w)
    assert torch.equal(argmax_2d(probs)[0, 0], torch.tensor([7.0, 12.0]))
    np.testing.assert_allclose(decode_points(probs, 1)[0, 0].numpy(), [7.3, 11.8], atol=1e-5)
    np.testing.assert_allclose(refine_subpixel(probs, argmax_2d(probs), 0)[0, 0].numpy(), [7.0, 12.0])


def test_refinement_at_the_border_stays_inside():
    probs = torch.zeros(1, 1, 5, 5)
    probs[0, 0, 0, 0] = 1.0
    np.testing.assert_allclose(decode_points(probs)[0, 0].numpy(), [0.0, 0.0])
