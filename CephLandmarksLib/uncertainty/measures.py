"""Uncertainty read from the heatmaps: Expected Radial Error (the shipped model's flag score), the
probability of a large error (shown beside it; adapted models flag on it, weighed with the image's
other points: flag_score.py) and credible-region contours."""

import numpy as np
import torch

from .levels import ERE_PIXEL_FLOOR, LARGE_ERROR_MM
from .regions import credible_level, lines_on_crop, ranked, region_mask


def _distances_mm(shape, points_uv, mm_per_px) -> torch.Tensor:
    """(L, H, W) distance (mm) of every model pixel from each landmark's point (L, 2)."""
    n_maps, h, w = shape
    pts = torch.as_tensor(np.asarray(points_uv), dtype=torch.float64)
    mmx, mmy = (float(v) for v in np.asarray(mm_per_px, dtype=float))
    dx = ((torch.arange(w, dtype=torch.float64)[None, :] - pts[:, 0:1]) * mmx) ** 2  # (L, W)
    dy = ((torch.arange(h, dtype=torch.float64)[None, :] - pts[:, 1:2]) * mmy) ** 2  # (L, H)
    return torch.sqrt(dy[:, :, None] + dx[:, None, :])


def expected_radial_error_mm(probs, points_uv, mm_per_px, floor: float = ERE_PIXEL_FLOOR) -> np.ndarray:
    """ERE of each map: the expected distance (mm) from the predicted point.

    probs (L, H, W) probabilities; points_uv (L, 2) predictions in model pixels;
    mm_per_px (2,) millimetres per model pixel along x and y.  Pixels below
    `floor` x the map's maximum are dropped and the rest renormalised (vectorised).
    """
    p = torch.as_tensor(probs, dtype=torch.float64)
    p = torch.where(p >= floor * p.amax(dim=(1, 2), keepdim=True), p, torch.zeros((), dtype=p.dtype))
    p = p / p.sum(dim=(1, 2), keepdim=True)
    return (p * _distances_mm(p.shape, points_uv, mm_per_px)).sum(dim=(1, 2)).numpy()


def error_probability(probs, points_uv, mm_per_px, radius_mm: float = LARGE_ERROR_MM) -> np.ndarray:
    """(L,) probability that each landmark lies more than `radius_mm` from its predicted point:
    the calibrated map's mass beyond that radius (no floor: far, faint second modes count).

    Shown beside ERE as a number a clinician can read ("P(error > 4 mm) 12 %").  On the
    held-out training images under the benchmark's shifts it is close to calibrated and
    ranks errors over 4 mm better than ERE; on Test2 it ranks them worse, so the shipped
    model flags on ERE (docs/robustness.md, benchmarks/studies/flag_study.py).  Once the maps are
    calibrated on a clinic's own images it ranks them better than ERE, and adapted models
    flag on it (docs/adaptation.md).
    """
    p = torch.as_tensor(probs, dtype=torch.float64)
    p = p / p.sum(dim=(1, 2), keepdim=True)
    far = _distances_mm(p.shape, points_uv, mm_per_px) > radius_mm
    return (p * far).sum(dim=(1, 2)).clamp(0.0, 1.0).numpy()


def credible_contours(prob_map: np.ndarray, masses=(0.5, 0.9)) -> dict:
    """{"50": [polyline, ...], "90": [...]}: boundaries of the smallest regions holding the given
    masses, each polyline (K, 2) in (x, y) pixels of the map, whole (no region rule: regions.py
    decides what is drawn).  `masses` is a sequence (keys are the masses in per cent) or a dict
    {level: mass} (conformal masses drawn under their level)."""
    if not isinstance(masses, dict):
        masses = {f"{round(m * 100)}": m for m in masses}
    z = np.asarray(prob_map, dtype=np.float64)
    values = ranked(z)
    out = {}
    for level, m in masses.items():
        t = credible_level(z, m, values)
        out[level] = lines_on_crop(z, t, z > t)
    return out


def region_extent(prob_map: np.ndarray, mass: float, point_uv, mm_per_px) -> tuple[float, float]:
    """(area in mm², largest distance in mm from the point) of the smallest region of the map
    holding `mass`: what a clinician reads as "the 90 % region spans 4 mm²,
    reaching 2.1 mm from the point"."""
    z = np.asarray(prob_map, dtype=np.float64)
    inside = region_mask(z, credible_level(z, mass))
    mmx, mmy = (float(v) for v in np.asarray(mm_per_px, dtype=np.float64))
    v, u = np.nonzero(inside)
    far = np.hypot((u - float(point_uv[0])) * mmx, (v - float(point_uv[1])) * mmy).max()
    return float(inside.sum() * mmx * mmy), float(far)
