"""Uncertainty read from the heatmaps: Expected Radial Error and credible-region contours."""

import numpy as np
import torch

ERE_PIXEL_FLOOR = 0.05  # the paper: pixels below 5 % of the map's maximum are dropped


def expected_radial_error_mm(probs, points_uv, mm_per_px, floor: float = ERE_PIXEL_FLOOR) -> np.ndarray:
    """ERE of each map: the expected distance (mm) from the predicted point.

    probs (L, H, W) probabilities; points_uv (L, 2) predictions in model pixels;
    mm_per_px (2,) millimetres per model pixel along x and y.  Pixels below
    `floor` x the map's maximum are dropped and the rest renormalised (vectorised).
    """
    p = torch.as_tensor(probs, dtype=torch.float64)
    l, h, w = p.shape
    pts = torch.as_tensor(np.asarray(points_uv), dtype=torch.float64)
    mmx, mmy = (float(v) for v in np.asarray(mm_per_px, dtype=float))
    p = torch.where(p >= floor * p.amax(dim=(1, 2), keepdim=True), p, torch.zeros((), dtype=p.dtype))
    p = p / p.sum(dim=(1, 2), keepdim=True)
    dx = ((torch.arange(w, dtype=torch.float64)[None, :] - pts[:, 0:1]) * mmx) ** 2  # (L, W)
    dy = ((torch.arange(h, dtype=torch.float64)[None, :] - pts[:, 1:2]) * mmy) ** 2  # (L, H)
    dist = torch.sqrt(dy[:, :, None] + dx[:, None, :])  # (L, H, W)
    return (p * dist).sum(dim=(1, 2)).numpy()


def credible_level(prob_map: np.ndarray, mass: float) -> float:
    """Level t such that {p > t} is the smallest region holding at least `mass` of the probability."""
    v = np.sort(np.asarray(prob_map, dtype=np.float64).ravel())[::-1]
    k = int(np.searchsorted(np.cumsum(v), mass * v.sum()))
    k = min(k, len(v) - 1)
    below = v[k + 1] if k + 1 < len(v) else 0.0
    return float((v[k] + below) / 2)


def credible_contours(prob_map: np.ndarray, masses=(0.5, 0.9)) -> dict:
    """{"50": [polyline, ...], "90": [...]}: boundaries of the smallest regions holding
    50 % / 90 % of the probability, each polyline (K, 2) in (x, y) pixels of the map."""
    import contourpy

    z = np.asarray(prob_map, dtype=np.float64)
    gen = contourpy.contour_generator(z=z, line_type=contourpy.LineType.Separate)
    return {f"{round(m * 100)}": [np.asarray(c) for c in gen.lines(credible_level(z, m))] for m in masses}
