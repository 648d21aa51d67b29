"""Uncertainty read from a distribution given as weighted cells: the same measures as measures.py
and conformal.py, for maps that mix grids (the combined coarse + fine map of the refiner).

A distribution is K cells, each with a position (mm, its centre), a probability mass and an
area (mm²); its density is mass / area.  On one uniform grid these reduce to measures.py's:
ERE drops cells below a fraction of the largest density, as the paper drops pixels below 5 %
of the map's maximum; regions are the highest-density cells first.
"""

import numpy as np

from .levels import ERE_PIXEL_FLOOR, LARGE_ERROR_MM


def densities(masses, areas_mm2) -> np.ndarray:
    return np.asarray(masses, dtype=np.float64) / np.asarray(areas_mm2, dtype=np.float64)


def ere_mm(positions_mm, masses, areas_mm2, point_mm, floor: float = ERE_PIXEL_FLOOR) -> float:
    """Expected distance (mm) of the distribution from `point_mm`, cells under `floor` x the
    largest density dropped and the rest renormalised."""
    m = np.asarray(masses, dtype=np.float64)
    d = densities(m, areas_mm2)
    keep = d >= floor * d.max()
    m = np.where(keep, m, 0.0)
    r = np.hypot(*(np.asarray(positions_mm, dtype=np.float64) - np.asarray(point_mm, dtype=np.float64)).T)
    return float((m * r).sum() / m.sum())


def error_probability(positions_mm, masses, point_mm, radius_mm: float = LARGE_ERROR_MM) -> float:
    """Mass lying more than `radius_mm` from `point_mm` (no floor)."""
    m = np.asarray(masses, dtype=np.float64)
    r = np.hypot(*(np.asarray(positions_mm, dtype=np.float64) - np.asarray(point_mm, dtype=np.float64)).T)
    return float(np.clip(m[r > radius_mm].sum() / m.sum(), 0.0, 1.0))


def region_score(masses, areas_mm2, density_at_truth: float) -> float:
    """Conformity score of a true point: the mass of the smallest region containing it, i.e. the
    mass of every cell at least as dense as the distribution is at the truth (conformal.py)."""
    m = np.asarray(masses, dtype=np.float64)
    return float(m[densities(m, areas_mm2) >= density_at_truth].sum() / m.sum())


def region_density(masses, areas_mm2, mass: float) -> float:
    """Density threshold t such that the cells denser than t are the smallest region holding `mass`."""
    m = np.asarray(masses, dtype=np.float64)
    d = densities(m, areas_mm2)
    order = np.argsort(-d, kind="stable")
    k = min(int(np.searchsorted(np.cumsum(m[order]), mass * m.sum())), len(m) - 1)
    below = d[order[k + 1]] if k + 1 < len(m) else 0.0
    return float((d[order[k]] + below) / 2)
