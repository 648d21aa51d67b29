"""Credible regions as they are drawn: which are drawn, and what is drawn of them.  One rule for the
overlay PNG, the PDF report and Slicer's slice views; numpy only at import (Slicer's own process reads
the rule; scipy and contourpy are imported where the regions are computed).

- A region is *not localised* when its area exceeds NOT_LOCALISED_AREA_MM2: it says "anywhere",
  not "here".  It is not drawn; the point gets a dashed ring marked "?" and the reason, e.g.
  "90 % region not localised: 179 cm²".  A model adapted to another machine's images can need
  "90 %" masses of 0.94-0.98 to hold a clinic's truth, and then some regions cover most of the
  skull as hundreds of fragments (median area 9 mm², 7.5 % of points over 1,000 mm² on 129
  radiographs).  The limit, 10 cm², is the area of a disc of radius 17.8 mm: over four times the
  large-error radius (levels.LARGE_ERROR_MM), so a region a clinician can still read as "near
  here" stays drawn.  An area, not the reach, decides: one far speck makes the reach large
  while the region is small.  It replaces the report's former rule (no "90 %" contours when
  ERE > 5 mm).
- A drawn region keeps only its connected parts (8-neighbourhood) holding at least
  MIN_PART_SHARE of the region's mass; the part with the map's maximum is always kept.  The mass
  of the parts dropped (a share of the whole map) is reported with the region, so nothing is
  hidden silently.
- The JSON keeps the true area and reach of the whole "90 %" region (region_90_area_mm2,
  region_90_max_distance_mm): the statistics stay honest.

Contours come from one marching-squares pass per level, on a crop around the kept parts.
"""

from collections.abc import Mapping

import numpy as np

NOT_LOCALISED_AREA_MM2 = 1000.0  # 10 cm²: a region larger than this is not drawn (see above)
MIN_PART_SHARE = 0.02  # a connected part of a drawn region holding less of the region's mass is dropped
RING_LEVEL = "90"  # the region whose area decides the "?" ring (the JSON's region_90_area_mm2)


def localised(area_mm2) -> bool:
    """Whether a region of this area is drawn (an unknown area, NaN, is: nothing says otherwise)."""
    area = float(area_mm2)
    return not (np.isfinite(area) and area > NOT_LOCALISED_AREA_MM2)


def area_text(area_mm2: float) -> str:
    """179 cm², 10 cm², 2.5 cm² or 95 mm²."""
    if area_mm2 >= 10 * 100:
        return f"{area_mm2 / 100:.0f} cm²"
    return f"{area_mm2 / 100:.1f} cm²" if area_mm2 >= 100 else f"{area_mm2:.0f} mm²"


def not_localised_text(area_mm2: float, level: str = RING_LEVEL) -> str:
    return f"{level} % region not localised: {area_text(area_mm2)}"


def ranked(prob_map) -> np.ndarray:
    """The map's values, float64, largest first (what every credible level of one map is read from)."""
    return np.sort(np.asarray(prob_map, dtype=np.float64).ravel())[::-1]


def credible_level(prob_map, mass: float, values=None) -> float:
    """Level t such that {p > t} is the smallest region holding at least `mass` of the probability.
    values: ranked(prob_map), when already at hand; without it only the map's top is sorted."""
    if values is None:
        v, total = ranked_head(prob_map, mass)
    else:
        v, total = values, values.sum()
    k = int(np.searchsorted(np.cumsum(v), mass * total))
    k = min(k, len(v) - 1)
    below = v[k + 1] if k + 1 < len(v) else 0.0
    return float((v[k] + below) / 2)


def ranked_head(prob_map, mass: float, first: int = 4096) -> tuple[np.ndarray, float]:
    """(the largest values, largest first, enough that all but the last hold `mass` of the map; the
    map's sum): what credible_level reads, without sorting the whole map (a peaked map's 90 % region
    is a few hundred of its 184,000 pixels)."""
    flat = np.asarray(prob_map, dtype=np.float64).ravel()
    n, total, k = flat.size, flat.sum(), first
    while k < n:
        head = np.sort(np.partition(flat, n - k)[n - k:])[::-1]
        if np.cumsum(head)[-2] >= mass * total:
            return head, total
        k *= 4
    return np.sort(flat)[::-1], total


def region_mask(z: np.ndarray, level: float) -> np.ndarray:
    """{z > level}, or the maximum's pixels when nothing is above (a flat map)."""
    inside = z > level
    return inside if inside.any() else z >= z.max()


def lines_on_crop(z: np.ndarray, level: float, keep: np.ndarray) -> list:
    """Marching-squares lines (K, 2), (x, y) map px, of {z > level} restricted to the pixels `keep`,
    from one pass on a crop one pixel around them (pixels of the region outside `keep` set to 0)."""
    import contourpy

    rows, cols = np.nonzero(keep)
    if not len(rows):
        return []
    y0, y1 = max(rows.min() - 1, 0), min(rows.max() + 2, z.shape[0])
    x0, x1 = max(cols.min() - 1, 0), min(cols.max() + 2, z.shape[1])
    crop = z[y0:y1, x0:x1]
    dropped = (crop > level) & ~keep[y0:y1, x0:x1]
    if dropped.any():
        crop = np.where(dropped, 0.0, crop)
    gen = contourpy.contour_generator(np.arange(x0, x1, dtype=np.float64), np.arange(y0, y1, dtype=np.float64),
                                      crop, line_type=contourpy.LineType.Separate)
    return [np.asarray(c) for c in gen.lines(level)]


def drawn_region(z: np.ndarray, level: float, mm_per_px) -> tuple[list, float, float]:
    """(lines, area mm², dropped mass) of the region {z > level} of one map (L1-normalised or not):
    no lines when it is not localised; else the lines of its parts holding meaningful mass, and
    the share of the map's mass in the parts dropped."""
    from scipy import ndimage

    inside = region_mask(z, level)
    mmx, mmy = (float(v) for v in np.asarray(mm_per_px, dtype=np.float64).ravel()[:2])
    area = float(inside.sum() * mmx * mmy)
    if not localised(area):
        return [], area, 0.0
    labels, n = ndimage.label(inside, structure=np.ones((3, 3), dtype=bool))
    if n <= 1:
        return lines_on_crop(z, level, inside), area, 0.0
    part_mass = ndimage.sum_labels(z, labels, index=np.arange(1, n + 1))
    keep_part = part_mass >= MIN_PART_SHARE * part_mass.sum()
    keep_part[labels.flat[int(np.argmax(z))] - 1] = True
    keep = keep_part[np.maximum(labels, 1) - 1] & inside
    dropped = float(part_mass[~keep_part].sum() / max(float(z.sum()), 1e-300))
    return lines_on_crop(z, level, keep), area, dropped


def drawn_regions(prob_map, masses: dict, mm_per_px, to_image=None) -> tuple[dict, dict]:
    """({level: [(K, 2) lines]}, {level: dropped mass}) of one map for {level: mass}; lines in map
    pixels, or mapped by `to_image` (e.g. ModelFrame.model_to_image).  One sort of the map serves
    every level."""
    z = np.asarray(prob_map, dtype=np.float64)
    values = ranked(z)
    lines, dropped = {}, {}
    for level, mass in masses.items():
        drawn, _, dropped[level] = drawn_region(z, credible_level(z, mass, values), mm_per_px)
        lines[level] = [to_image(c) for c in drawn] if to_image else drawn
    return lines, dropped


class LazyContours(Mapping):
    """A point's drawn regions {level: [(K, 2) image px lines]}, computed on first access (detection
    computes none unless something draws them), with `dropped_mass` {level: share of the map}."""

    def __init__(self, compute=None, lines=None, dropped_mass=None):
        self._compute, self._lines, self._dropped = compute, lines, dropped_mass

    def _load(self):
        if self._lines is None:
            self._lines, self._dropped = self._compute() if self._compute else ({}, {})
            self._compute = None
        return self._lines

    def __getitem__(self, level):
        return self._load()[level]

    def __iter__(self):
        return iter(self._load())

    def __len__(self):
        return len(self._load())

    @property
    def dropped_mass(self) -> dict:
        self._load()
        return dict(self._dropped or {})


def dropped_mass(contours) -> dict:
    """{level: share of the map's mass in fragments not drawn} of a point's contours (empty: none known)."""
    return getattr(contours, "dropped_mass", {})


def region_notes(landmarks, min_share: float = 0.005) -> tuple[list, list]:
    """(["Po 179 cm²", ...] regions not localised, ["B 3 %", ...] points whose drawn "90 %" region
    left out fragments holding at least `min_share` of the mass): what a caption or table says."""
    far, fragments = [], []
    for lm in landmarks:
        if lm.missing:
            continue
        if not localised(lm.region_90_area_mm2):
            far.append(f"{lm.abbreviation} {area_text(lm.region_90_area_mm2)}")
            continue
        share = dropped_mass(lm.contours_px).get(RING_LEVEL, 0.0)
        if share >= min_share:
            fragments.append(f"{lm.abbreviation} {100 * share:.0f} %" if share >= 0.01 else
                             f"{lm.abbreviation} {100 * share:.1f} %")
    return far, fragments


def region_caption(landmarks) -> str:
    """One sentence for a caption: which "90 %" regions are not drawn and which lost fragments."""
    far, fragments = region_notes(landmarks)
    parts = []
    if far:
        parts.append(f"90 % regions not localised (over {area_text(NOT_LOCALISED_AREA_MM2)}; not drawn, "
                     f"ringed '?'): {', '.join(far)}.")
    if fragments:
        parts.append(f"Fragments holding little mass not drawn: {', '.join(fragments)} of the map.")
    return " ".join(parts)
