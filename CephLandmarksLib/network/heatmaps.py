"""Heatmaps as classification: a softmax over each landmark's whole map.

Training target: the true position split bilinearly over its four neighbouring pixels
(no flooring), so the expected position under the target equals the true position.
"""

import numpy as np
import torch
import torch.nn.functional as F


def log_softmax_2d(logits: torch.Tensor, temperatures: torch.Tensor | None = None) -> torch.Tensor:
    """(N, L, H, W) logits -> log-probabilities normalised over each map's H*W pixels."""
    n, n_maps, h, w = logits.shape
    if temperatures is not None:
        logits = logits / temperatures.view(1, n_maps, 1, 1).to(logits)
    return F.log_softmax(logits.reshape(n, n_maps, h * w), dim=-1).reshape(n, n_maps, h, w)


def softmax_2d(logits, temperatures=None) -> torch.Tensor:
    return log_softmax_2d(logits, temperatures).exp()


def mask_padding(logits: torch.Tensor, frames) -> torch.Tensor:
    """Logits with the padding (outside each image) pushed to -1e4, so no probability lands there."""
    masks = torch.as_tensor(np.stack([f.image_mask() for f in frames]))[:, None]
    return logits.masked_fill(~masks, -1e4)


def bilinear_target(uv: torch.Tensor, height: int, width: int):
    """Flat indices (N, L, 4) and weights (N, L, 4) of the bilinear split of points uv (N, L, 2).

    Points outside the map get weight 0 (their valid flag is returned as (N, L) bool).
    """
    u, v = uv[..., 0], uv[..., 1]
    valid = (u >= 0) & (u <= width - 1) & (v >= 0) & (v <= height - 1)
    u = u.clamp(0, width - 1)
    v = v.clamp(0, height - 1)
    u0 = u.floor().clamp(max=width - 2)
    v0 = v.floor().clamp(max=height - 2)
    fu, fv = u - u0, v - v0
    u0, v0 = u0.long(), v0.long()
    idx = torch.stack([v0 * width + u0, v0 * width + u0 + 1, (v0 + 1) * width + u0, (v0 + 1) * width + u0 + 1], -1)
    wts = torch.stack([(1 - fu) * (1 - fv), fu * (1 - fv), (1 - fu) * fv, fu * fv], -1)
    return idx, wts * valid[..., None], valid


def heatmap_nll(logits: torch.Tensor, uv: torch.Tensor, temperatures=None, reduce=True):
    """Cross-entropy of the softmax maps against the bilinear targets at uv (model pixels).

    Returns the mean over valid (image, landmark) pairs, or (N, L) losses with reduce=False.
    """
    n, n_maps, h, w = logits.shape
    logp = log_softmax_2d(logits, temperatures).reshape(n, n_maps, h * w)
    idx, wts, valid = bilinear_target(uv, h, w)
    loss = -(logp.gather(-1, idx) * wts).sum(-1)
    if not reduce:
        return loss
    return loss.sum() / valid.sum().clamp(min=1)


def argmax_2d(maps: torch.Tensor) -> torch.Tensor:
    """(N, L, H, W) -> integer (u, v) of each map's maximum, as float (N, L, 2)."""
    n, n_maps, h, w = maps.shape
    flat = maps.reshape(n, n_maps, h * w).argmax(-1)
    return torch.stack([(flat % w).float(), (flat // w).float()], -1)


def refine_subpixel(probs: torch.Tensor, peak_uv: torch.Tensor, radius: int = 1) -> torch.Tensor:
    """Local centroid of the probability in a (2r+1)^2 window around each integer peak.

    With bilinear targets the network learns to spread mass over the neighbours of the
    true position, so the local centroid recovers the sub-pixel offset.
    """
    if radius <= 0:
        return peak_uv
    n, n_maps, h, w = probs.shape
    padded = F.pad(probs, (radius, radius, radius, radius))
    k = 2 * radius + 1
    offs = torch.arange(-radius, radius + 1, dtype=probs.dtype)
    pu, pv = peak_uv[..., 0].long(), peak_uv[..., 1].long()
    rows = (pv[..., None] + radius + offs.long())  # (N, L, k)
    cols = (pu[..., None] + radius + offs.long())
    flat = padded.reshape(n, n_maps, -1)
    pw = w + 2 * radius
    idx = (rows[..., :, None] * pw + cols[..., None, :]).reshape(n, n_maps, k * k)
    win = flat.gather(-1, idx).reshape(n, n_maps, k, k)
    mass = win.sum((-1, -2)).clamp(min=1e-12)
    du = (win.sum(-2) * offs).sum(-1) / mass
    dv = (win.sum(-1) * offs).sum(-1) / mass
    return peak_uv + torch.stack([du, dv], -1)


def decode_points(probs: torch.Tensor, refine_radius: int = 1) -> torch.Tensor:
    """Landmark positions (N, L, 2) in model pixels: argmax, refined to sub-pixel."""
    return refine_subpixel(probs, argmax_2d(probs), refine_radius)


def _translated(p: torch.Tensor, dx: int, dy: int) -> torch.Tensor:
    """Map (H, W) moved by whole pixels (dx, dy); what moves in from outside is zero."""
    h, w = p.shape
    out = torch.zeros_like(p)
    if abs(dx) >= w or abs(dy) >= h:
        return out
    out[max(dy, 0):h + min(dy, 0), max(dx, 0):w + min(dx, 0)] = \
        p[max(-dy, 0):h - max(dy, 0), max(-dx, 0):w - max(dx, 0)]
    return out


def shift_maps(probs: torch.Tensor, shifts_uv) -> torch.Tensor:
    """Probability maps (L, H, W) each moved by its own (du, dv) model pixels, bilinearly, renormalised.

    Moves a landmark's whole distribution with its point (clinic convention offsets), so
    ERE, regions and P(error > 4 mm) read from the moved map describe the moved point.
    """
    out = torch.empty_like(probs)
    for i, (du, dv) in enumerate(np.asarray(shifts_uv, dtype=np.float64)):
        iu, iv = int(np.floor(du)), int(np.floor(dv))
        fu, fv = du - iu, dv - iv
        p = probs[i]
        moved = ((1 - fu) * (1 - fv) * _translated(p, iu, iv) + fu * (1 - fv) * _translated(p, iu + 1, iv)
                 + (1 - fu) * fv * _translated(p, iu, iv + 1) + fu * fv * _translated(p, iu + 1, iv + 1))
        total = moved.sum()
        out[i] = moved / total if total > 0 else p
    return out
