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


def _maps(probs) -> np.ndarray:
    """probs (L, H, W), a tensor or an array, as a numpy array (no copy for a CPU tensor)."""
    if isinstance(probs, torch.Tensor):
        return probs.detach().cpu().numpy()
    return np.asarray(probs)


def _at_least(z: np.ndarray, bound: float) -> np.ndarray:
    """Flat indices of the pixels of the map z whose value, read as float64, is >= `bound` (a float64):
    compared in z's own precision against the largest value of that precision not above the bound
    (a superset), then exactly in float64 on those few."""
    flat = z.ravel()
    b = np.asarray(bound, dtype=flat.dtype)
    if float(b) > bound:
        b = np.nextafter(b, np.asarray(-np.inf, dtype=flat.dtype))
    idx = np.flatnonzero(flat >= b)
    return idx[flat[idx].astype(np.float64) >= bound]


def _pixel_distances_mm(idx, width: int, point_uv, mmx: float, mmy: float) -> np.ndarray:
    """Distances (mm) of the pixels at flat indices `idx` from the point, computed as _distances_mm does."""
    dx = ((idx % width).astype(np.float64) - float(point_uv[0])) * mmx
    dy = ((idx // width).astype(np.float64) - float(point_uv[1])) * mmy
    return np.sqrt(dy ** 2 + dx ** 2)


def expected_radial_error_mm(probs, points_uv, mm_per_px, floor: float = ERE_PIXEL_FLOOR) -> np.ndarray:
    """ERE of each map: the expected distance (mm) from the predicted point.

    probs (L, H, W) probabilities; points_uv (L, 2) predictions in model pixels;
    mm_per_px (2,) millimetres per model pixel along x and y.  Pixels below
    `floor` x the map's maximum are dropped and the rest renormalised.  Only the pixels kept are
    read (a few hundred of a peaked map's 184,000); the same values as summing over the whole map
    (_ere_full), to float precision.
    """
    z = _maps(probs)
    pts = np.asarray(points_uv, dtype=np.float64)
    mmx, mmy = (float(v) for v in np.asarray(mm_per_px, dtype=float))
    out = np.empty(len(z), dtype=np.float64)
    for i in range(len(z)):
        idx = _at_least(z[i], floor * float(z[i].max()))
        p = z[i].ravel()[idx].astype(np.float64)
        p = p / p.sum()
        out[i] = (p * _pixel_distances_mm(idx, z.shape[2], pts[i], mmx, mmy)).sum()
    return out


def _ere_full(probs, points_uv, mm_per_px, floor: float = ERE_PIXEL_FLOOR) -> np.ndarray:
    """expected_radial_error_mm over whole distance grids (its former implementation, the reference of its tests)."""
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

    Distances are computed only in a box around the point (every pixel outside it is beyond the
    radius): the same values as over whole distance grids (_error_probability_full), to float
    precision; the mass beyond is summed, never taken as 1 - the mass within.
    """
    z = _maps(probs)
    pts = np.asarray(points_uv, dtype=np.float64)
    mmx, mmy = (float(v) for v in np.asarray(mm_per_px, dtype=float))
    n, h, w = z.shape
    out = np.empty(n, dtype=np.float64)
    for i in range(n):
        m = z[i]
        total = m.sum(dtype=np.float64)
        # the box holding every pixel within the radius, one pixel wider on each side
        u0 = int(np.clip(np.floor(pts[i, 0] - radius_mm / mmx) - 1, 0, w))
        u1 = int(np.clip(np.ceil(pts[i, 0] + radius_mm / mmx) + 2, u0, w))
        v0 = int(np.clip(np.floor(pts[i, 1] - radius_mm / mmy) - 1, 0, h))
        v1 = int(np.clip(np.ceil(pts[i, 1] + radius_mm / mmy) + 2, v0, h))
        beyond = (m[:v0].sum(dtype=np.float64) + m[v1:].sum(dtype=np.float64)
                  + m[v0:v1, :u0].sum(dtype=np.float64) + m[v0:v1, u1:].sum(dtype=np.float64))
        rows, cols = np.mgrid[v0:v1, u0:u1]
        idx = (rows * w + cols).ravel()
        far = _pixel_distances_mm(idx, w, pts[i], mmx, mmy) > radius_mm
        beyond += m.ravel()[idx[far]].sum(dtype=np.float64)
        out[i] = beyond / total
    return np.clip(out, 0.0, 1.0)


def _error_probability_full(probs, points_uv, mm_per_px, radius_mm: float = LARGE_ERROR_MM) -> np.ndarray:
    """error_probability over whole distance grids (its former implementation, the reference of its tests)."""
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
    reaching 2.1 mm from the point".

    The region's level is read from the pixels above a bound (1e-3, then 1e-6 of the map's maximum)
    when all but the last of them already hold `mass`: they are the head of the map's ranking, so the
    level, and the region, are those of the whole map's (_region_extent_full); else from the whole map."""
    z = np.asarray(prob_map, dtype=np.float64)
    flat = z.ravel()
    total, top = flat.sum(), float(flat.max())
    mmx, mmy = (float(v) for v in np.asarray(mm_per_px, dtype=np.float64))
    for fraction in (1e-3, 1e-6):
        idx = np.flatnonzero(flat >= fraction * top)
        vals = flat[idx]
        v = np.sort(vals)[::-1]
        if len(v) < 2:
            continue
        cum = np.cumsum(v)
        if cum[-2] < mass * total:
            continue
        k = min(int(np.searchsorted(cum, mass * total)), len(v) - 1)
        level = float((v[k] + v[k + 1]) / 2)
        inside = vals > level
        if not inside.any():  # region_mask: the maximum's pixels when nothing is above
            inside = vals >= top
        u, v = idx[inside] % z.shape[1], idx[inside] // z.shape[1]
        far = np.hypot((u - float(point_uv[0])) * mmx, (v - float(point_uv[1])) * mmy).max()
        return float(inside.sum() * mmx * mmy), float(far)
    return _region_extent_full(z, mass, point_uv, mm_per_px)


def _region_extent_full(prob_map: np.ndarray, mass: float, point_uv, mm_per_px) -> tuple[float, float]:
    """region_extent from the whole map (its former implementation: the fall-back, and the reference of its tests)."""
    z = np.asarray(prob_map, dtype=np.float64)
    inside = region_mask(z, credible_level(z, mass))
    mmx, mmy = (float(v) for v in np.asarray(mm_per_px, dtype=np.float64))
    v, u = np.nonzero(inside)
    far = np.hypot((u - float(point_uv[0])) * mmx, (v - float(point_uv[1])) * mmy).max()
    return float(inside.sum() * mmx * mmy), float(far)
