"""Landmarks outside the image (anatomy cut off by the collimator or the model's field of view).

Such a landmark is reported missing and flagged, never snapped to the image border.
A point is missing when either
- the heatmap, before the padding is masked out, puts most of its probability outside
  the image: over MISSING_MASS, and at a density outside over OUTSIDE_DENSITY_RATIO times
  the density inside (so that a flat, clueless map is not read as "outside"), or
- the decoded point lies within EDGE_MARGIN_PX model pixels of the image's border and
  the map has a real peak (its maximum over PEAK_OVER_UNIFORM times a flat map's): a
  peak pressed against the border, whose mass wanted to go beyond it, or
- the decoded point maps outside the image bounds.
Unless the confident landmarks place it well inside: a map whose mode fell in the padding while
the image's other landmarks put the point at least SHAPE_LIMIT_MM inside the image (further than
any ISBI landmark lies from its place in the training shape) is not missing.  The point goes to
the map's best mode inside the image within SHAPE_LIMIT_MM of that place, flagged implausible and
uncertain (`placed_inside`, `best_mode_near`).  Radiographs of another machine, smaller than
ISBI's, had nasion reported missing on one image in ten while it lay 40-60 mm inside.
A point that is not missing but lies within NEAR_EDGE_MM of the border is flagged: the true
point may be a large error away, beyond the edge, where the image cannot show it.  (No
landmark of the 400 ISBI 2015 images lies within 10 mm of its image's border.)
"""

import numpy as np
import torch

from .alignment import SHAPE_LIMIT_MM
from .result import NEAR_EDGE_MM

MISSING_MASS = 0.5
OUTSIDE_DENSITY_RATIO = 2.0
EDGE_MARGIN_PX = 1.0  # model pixels from the outermost pixel centres of the image in the canvas
PEAK_OVER_UNIFORM = 20.0
INSIDE_MARGIN_MM = SHAPE_LIMIT_MM  # an expected place this far inside the border: the landmark is not cut off


def outside_mass(logits: torch.Tensor, mask: np.ndarray, temperatures=None) -> np.ndarray:
    """(L,) probability outside the image of each unmasked map; logits (L, H, W), mask (H, W) bool."""
    from ..network.heatmaps import softmax_2d

    probs = softmax_2d(logits[None], temperatures)[0]
    return probs.masked_fill(torch.as_tensor(mask)[None], 0.0).sum(dim=(1, 2)).numpy()


def at_border(uv: np.ndarray, frame, margin_px=EDGE_MARGIN_PX) -> np.ndarray:
    """(L,) bool: decoded points (L, 2) in model pixels within `margin_px` (a number, or one
    along u and one along v) of the image's border in the canvas (the part the model sees)."""
    (u0, u1), (v0, v1) = frame.visible_box()
    mu, mv = np.broadcast_to(np.asarray(margin_px, dtype=np.float64), (2,))
    u, v = np.asarray(uv, dtype=np.float64).T
    return (u - u0 < mu) | ((u1 - 1) - u < mu) | (v - v0 < mv) | ((v1 - 1) - v < mv)


def near_edge(uv: np.ndarray, frame, model_pixel_mm, margin_mm: float = NEAR_EDGE_MM) -> np.ndarray:
    """(L,) bool: decoded points within `margin_mm` of the image's border (model_pixel_mm: (x, y) mm)."""
    return at_border(uv, frame, margin_mm / np.asarray(model_pixel_mm, dtype=np.float64))


def missing_landmarks(uv: np.ndarray, frame, mass_outside: np.ndarray, peak_prob: np.ndarray) -> np.ndarray:
    """(L,) bool: which decoded landmarks are to be reported missing (see the module's rules).

    uv (L, 2) decoded points, model pixels; mass_outside (L,) from `outside_mass`;
    peak_prob (L,) the maximum of each (padding-masked) probability map.
    """
    share = float(np.clip(1.0 - frame.image_mask().mean(), 1e-9, 1 - 1e-9))  # of the canvas outside the image
    m = np.clip(np.asarray(mass_outside, dtype=np.float64), 0.0, 1.0)
    density_ratio = (m / share) / np.maximum((1.0 - m) / (1.0 - share), 1e-12)
    by_mass = (m > MISSING_MASS) & (density_ratio > OUTSIDE_DENSITY_RATIO)
    outside = ~frame.inside_image(frame.model_to_image(uv))
    peaked = np.asarray(peak_prob) * frame.image_mask().sum() > PEAK_OVER_UNIFORM
    return by_mass | (at_border(uv, frame) & peaked) | outside


def placed_inside(expected_uv, frame, model_pixel_mm, margin_mm: float | None = None) -> np.ndarray:
    """(L,) bool: expected places (L, 2, model pixels; alignment.expected_places) at least `margin_mm`
    (default INSIDE_MARGIN_MM) inside the image's border."""
    margin_mm = INSIDE_MARGIN_MM if margin_mm is None else margin_mm
    return ~at_border(expected_uv, frame, margin_mm / np.asarray(model_pixel_mm, dtype=np.float64))


def best_mode_near(prob_map: torch.Tensor, centre_uv, radius_px) -> torch.Tensor:
    """The map (H, W) restricted to the disc of `radius_px` (u, v model pixels) around `centre_uv`
    and to the image (the padding is already 0): what the point is decoded from instead."""
    h, w = prob_map.shape
    ru, rv = np.broadcast_to(np.asarray(radius_px, dtype=np.float64), (2,))
    u = (torch.arange(w, dtype=torch.float64) - float(centre_uv[0])) / ru
    v = (torch.arange(h, dtype=torch.float64) - float(centre_uv[1])) / rv
    disc = v[:, None] ** 2 + u[None, :] ** 2 <= 1.0
    return torch.where(disc, prob_map, torch.zeros((), dtype=prob_map.dtype))
