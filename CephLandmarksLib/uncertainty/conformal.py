"""Split-conformal credible regions: per landmark, the heatmap mass whose region holds the truth.

A landmark's region at level "90" is the smallest region of its calibrated heatmap holding
mass m*.  Its conformity score on a calibration image is the mass of the smallest region
that still contains the true point (the heatmap's mass at or above the density there).
m* is the ceil((n + 1) * 0.9)-th smallest of the n calibration scores, so a new image's
region contains its true point with probability at least 90 % (exchangeability; Vovk et
al., split conformal prediction).  With n < 9 the rule asks for more than the n scores
hold and the region is the whole map (mass 1).

Per landmark, not pooled: landmarks differ in how far their heatmaps are from calibrated
(on Test2 the lip landmarks' nominal 90 % regions hold the truth 3-13 % of the time, sella's
nearly always), so one pooled mass would over-cover most landmarks and under-cover exactly
those.  The 10 images that adaptation requires give each landmark 10 scores, enough for a
finite 90 % mass.
"""

import math

import numpy as np
import torch

from .levels import CONTOUR_LEVELS, NOMINAL_MASSES  # noqa: F401 - NOMINAL_MASSES re-exported

RULE = ("per landmark, the ceil((n+1)(1-alpha))-th smallest calibration score, where a score is the heatmap mass "
        "of the smallest region containing the true point")


def densities_at(probs: torch.Tensor, uv) -> torch.Tensor:
    """(L,) bilinear density of each map (L, H, W) at its point (L, 2, model pixels); 0 off the map."""
    n_maps, h, w = probs.shape
    uv = torch.as_tensor(np.asarray(uv, dtype=np.float64))
    u, v = uv[:, 0], uv[:, 1]
    on = torch.isfinite(u) & torch.isfinite(v) & (u >= 0) & (u <= w - 1) & (v >= 0) & (v <= h - 1)
    u, v = torch.where(on, u, 0.0), torch.where(on, v, 0.0)
    u0, v0 = u.floor().clamp(max=w - 2).long(), v.floor().clamp(max=h - 2).long()
    fu, fv = u - u0, v - v0
    flat = probs.reshape(n_maps, -1).double()
    at = lambda du, dv: flat.gather(1, ((v0 + dv) * w + u0 + du)[:, None])[:, 0]  # noqa: E731
    d = (1 - fu) * (1 - fv) * at(0, 0) + fu * (1 - fv) * at(1, 0) + (1 - fu) * fv * at(0, 1) + fu * fv * at(1, 1)
    return torch.where(on, d, torch.zeros_like(d))


def region_scores(probs, uv_true) -> np.ndarray:
    """(L,) conformity scores: the mass of each map (L, H, W) at or above its density at the true
    point (L, 2, model pixels).  1.0 for a true point off the map."""
    probs = torch.as_tensor(probs)
    d = densities_at(probs, uv_true).to(probs.dtype)
    above = torch.where(probs >= d[:, None, None], probs, torch.zeros((), dtype=probs.dtype))
    scores = (above.sum(dim=(1, 2)).double() / probs.sum(dim=(1, 2)).double()).numpy()
    return np.clip(np.where(d.numpy() > 0, scores, 1.0), 0.0, 1.0)


def conformal_mass(scores, level: float) -> float:
    """The split-conformal mass for coverage `level` from n calibration scores (1.0 when n is too small)."""
    s = np.sort(np.asarray(scores, dtype=np.float64).ravel())
    s = s[np.isfinite(s)]
    k = math.ceil((len(s) + 1) * level)
    return 1.0 if k > len(s) else float(s[k - 1])


def fit_region_masses(scores) -> dict:
    """{"50": [L masses], "90": [L masses]} from calibration scores (n images, L landmarks)."""
    scores = np.asarray(scores, dtype=np.float64)
    return {level: [round(conformal_mass(scores[:, j], nominal), 6) for j in range(scores.shape[1])]
            for level, nominal in NOMINAL_MASSES.items()}


def masses_for(region_masses: dict, n_landmarks: int) -> dict:
    """{"50": (L,), "90": (L,)} masses to draw: the model's conformal masses, else the nominal ones."""
    return {level: np.asarray(region_masses.get(level) or [nominal] * n_landmarks, dtype=np.float64)
            for level, nominal in NOMINAL_MASSES.items()}


def covered(scores, masses) -> np.ndarray:
    """Whether each region of the given masses contains its true point (score within the mass)."""
    return np.asarray(scores) <= np.asarray(masses) + 1e-9
