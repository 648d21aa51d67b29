"""The combined map of the two stages: the coarse map outside each landmark's crop, the fine map
inside it, weighted by the coarse mass the crop holds.  Pure numpy (no torch), so the Slicer
process can read it.

For landmark l with coarse probabilities P (H, W) on the model grid and fine probabilities
Q (h, w) on its crop (each summing to 1), and m = the mass of P on the coarse pixels whose
centres fall inside the crop:

    combined = P on the coarse pixels outside the crop  +  m * Q on the crop's pixels

which again sums to 1.  Its point is the fine map's (argmax refined by a 3 x 3 centroid) when
m >= MIN_INSIDE_MASS (the coarse stage is confident the landmark is in the crop); otherwise the
coarse point is kept and the landmark flagged FLAG_OUTSIDE_CROP.  The two grids differ (about
0.5 mm and 0.125 mm a pixel), so every measure reads the map as cells with a position, a mass
and an area (uncertainty/weighted.py): ERE, P(error > 4 mm), the conformal regions' scores.

Every measure reads the two grids as they are (`grids`): the coarse map with the crop's pixels
zeroed and the fine map times m, each with its cell area and its pixel -> image affine, so no
cell list of the whole coarse map is built per landmark; `cells` is the reference definition
the tests hold them to.

Heatmaps file (FORMAT, NAME.heatmaps.npz): the arrays of format 1 (detection/result.py's
save_heatmaps: `probs` (L, H, W) float32 the coarse maps, `frame`, the contours), plus
`format` (str), `model_to_image` (3, 3) the coarse grid's pixel -> image pixel affine,
`spacing_mm` (2,), `fine` (L, h, w) float32, `crops` (L, 7) CropFrame.to_array rows,
`inside_mass` (L,), `refined` (L,) bool, `points_px` (L, 2) (`npz_arrays` / `from_npz`;
`save_npz` / `load_npz` write and read these alone).  A reader of format 1 reads a format 2
file as its coarse maps.
"""

from dataclasses import dataclass, replace

import numpy as np

from ..imaging.crops import CropFrame
from ..uncertainty import weighted
from ..uncertainty.levels import ERE_PIXEL_FLOOR, LARGE_ERROR_MM
from ..uncertainty.regions import MIN_PART_SHARE, lines_on_crop, localised

FORMAT = "ceph-landmarks-heatmaps/2"
MIN_INSIDE_MASS = 0.5  # the coarse mass inside the crop from which the fine map's point is taken
FLAG_OUTSIDE_CROP = "outside_crop"  # the coarse map's mass lies mostly outside the crop: coarse point kept


@dataclass
class CombinedMap:
    coarse: np.ndarray  # (L, H, W) coarse probabilities, each map summing to 1
    model_to_image: np.ndarray  # (3, 3) coarse pixel (u, v, 1) -> image pixel (x, y, 1)
    spacing_mm: np.ndarray  # (2,) the image's mm per pixel
    fine: np.ndarray  # (L, h, w) fine probabilities over each crop, each summing to 1
    crops: list  # L CropFrames
    inside_mass: np.ndarray  # (L,) coarse mass on the pixels inside each crop
    refined: np.ndarray  # (L,) bool: the point is the fine map's
    points_px: np.ndarray  # (L, 2) the points, image pixels

    @property
    def flags(self) -> list[list[str]]:
        return [[] if r else [FLAG_OUTSIDE_CROP] for r in self.refined]

    def sample_points_px(self, i: int, n: int, rng: np.random.Generator, jitter: bool = True) -> np.ndarray:
        """sample_points_px as a method: the measurement intervals (cephalometry, a lower layer) draw
        from a detection's combined map through it without importing this module."""
        return sample_points_px(self, i, n, rng, jitter)


def coarse_centres_px(shape, model_to_image) -> np.ndarray:
    """(H, W, 2) image positions of the coarse grid's pixel centres."""
    h, w = shape
    vv, uu = np.mgrid[0:h, 0:w].astype(np.float64)
    m = np.asarray(model_to_image, dtype=np.float64)
    return np.stack([m[0, 0] * uu + m[0, 1] * vv + m[0, 2], m[1, 0] * uu + m[1, 1] * vv + m[1, 2]], -1)


def coarse_area_mm2(model_to_image, spacing_mm) -> float:
    m = np.asarray(model_to_image, dtype=np.float64)
    return float(abs(np.linalg.det(m[:2, :2])) * np.prod(np.asarray(spacing_mm, dtype=np.float64)))


def inside_mask(shape, model_to_image, crop: CropFrame) -> np.ndarray:
    """(H, W) bool: the coarse pixels whose centres lie inside the crop.  The model frame's axes are
    the image's (a diagonal affine, mirrored or not), so the test splits into columns and rows."""
    m = np.asarray(model_to_image, dtype=np.float64)
    h, w = shape
    if m[0, 1] != 0 or m[1, 0] != 0:
        return crop.contains(coarse_centres_px(shape, m))
    xs = m[0, 0] * np.arange(w) + m[0, 2]
    ys = m[1, 1] * np.arange(h) + m[1, 2]
    cx, cy = crop.centre_px
    u = crop.image_to_crop(np.column_stack([xs, np.full(w, cy)]))[:, 0]
    v = crop.image_to_crop(np.column_stack([np.full(h, cx), ys]))[:, 1]
    cw, ch = crop.size
    return ((v >= -0.5) & (v <= ch - 0.5))[:, None] & ((u >= -0.5) & (u <= cw - 0.5))[None, :]


def inside_masks(shape, model_to_image, crops) -> np.ndarray:
    """(L, H, W) bool: the coarse pixels whose centres lie inside each landmark's crop."""
    return np.stack([inside_mask(shape, model_to_image, c) for c in crops])


def fine_peak(q: np.ndarray) -> np.ndarray:
    """(u, v) of a fine map's maximum refined by the centroid of its 3 x 3 neighbourhood."""
    h, w = q.shape
    v, u = np.unravel_index(int(np.argmax(q)), q.shape)
    v0, v1, u0, u1 = max(v - 1, 0), min(v + 2, h), max(u - 1, 0), min(u + 2, w)
    win = q[v0:v1, u0:u1].astype(np.float64)
    vv, uu = np.mgrid[v0:v1, u0:u1]
    s = win.sum()
    return np.array([(uu * win).sum() / s, (vv * win).sum() / s]) if s > 0 else np.array([u, v], dtype=float)


def combine(coarse, model_to_image, spacing_mm, fine, crops, coarse_points_px,
            min_inside_mass: float = MIN_INSIDE_MASS) -> CombinedMap:
    """The combined map and its points from the coarse maps (L, H, W), the fine maps (L, h, w) on
    `crops`, and the coarse stage's points (L, 2, image pixels)."""
    coarse = np.asarray(coarse, dtype=np.float64)
    fine = np.asarray(fine, dtype=np.float64)
    coarse = coarse / coarse.sum(axis=(1, 2), keepdims=True)
    fine = fine / fine.sum(axis=(1, 2), keepdims=True)
    masks = inside_masks(coarse.shape[1:], model_to_image, crops)
    inside = (coarse * masks).sum(axis=(1, 2))
    refined = inside >= min_inside_mass
    points = np.array(coarse_points_px, dtype=np.float64).reshape(-1, 2)
    for i, c in enumerate(crops):
        if refined[i]:
            points[i] = c.crop_to_image(fine_peak(fine[i]))
    return CombinedMap(coarse.astype(np.float32), np.asarray(model_to_image, dtype=np.float64),
                       np.asarray(spacing_mm, dtype=np.float64), fine.astype(np.float32), list(crops), inside,
                       refined, points)


def cells(cm: CombinedMap, i: int):
    """(positions (K, 2) mm, masses (K,), areas (K,) mm²) of landmark i's combined map."""
    centres = coarse_centres_px(cm.coarse.shape[1:], cm.model_to_image)
    crop = cm.crops[i]
    outside = ~inside_mask(cm.coarse.shape[1:], cm.model_to_image, crop)
    h, w = cm.fine.shape[1:]
    vv, uu = np.mgrid[0:h, 0:w].astype(np.float64)
    fine_px = crop.crop_to_image(np.stack([uu, vv], -1)).reshape(-1, 2)
    pos = np.concatenate([centres[outside], fine_px]) * cm.spacing_mm
    mass = np.concatenate([cm.coarse[i][outside].astype(np.float64),
                           cm.inside_mass[i] * cm.fine[i].ravel().astype(np.float64)])
    area = np.concatenate([np.full(int(outside.sum()), coarse_area_mm2(cm.model_to_image, cm.spacing_mm)),
                           np.full(h * w, crop.pixel_area_mm2())])
    return pos, mass, area


def grids(cm: CombinedMap, i: int) -> list:
    """[(masses (H, W) float64, cell area mm², 3 x 3 grid pixel -> image pixel affine)] of landmark i's
    combined map: the coarse map with the crop's pixels zeroed, and the fine map times the inside mass.
    The same cells as `cells`, kept on their grids."""
    crop = cm.crops[i]
    coarse = np.where(inside_mask(cm.coarse.shape[1:], cm.model_to_image, crop), 0.0, cm.coarse[i].astype(np.float64))
    return [(coarse, coarse_area_mm2(cm.model_to_image, cm.spacing_mm), np.asarray(cm.model_to_image, np.float64)),
            (cm.inside_mass[i] * cm.fine[i].astype(np.float64), crop.pixel_area_mm2(), crop.crop_to_image_matrix())]


def _to_image(affine, cols, rows) -> np.ndarray:
    """(K, 2) image pixels of grid pixels (cols, rows)."""
    a = affine
    return np.stack([a[0, 0] * cols + a[0, 1] * rows + a[0, 2], a[1, 0] * cols + a[1, 1] * rows + a[1, 2]], -1)


def _distances_mm(cm, affine, rows, cols, point_px) -> np.ndarray:
    return np.hypot(*((_to_image(affine, cols, rows) - point_px) * cm.spacing_mm).T)


def _window(cm, affine, shape, point_px, radius_mm):
    """(rows, cols) index arrays of the grid pixels around an image point that may lie within radius_mm."""
    inv = np.linalg.inv(affine)
    u, v = inv[:2, :2] @ np.asarray(point_px, dtype=np.float64) + inv[:2, 2]
    rx, ry = radius_mm / cm.spacing_mm  # the disc's half-widths, image pixels
    du, dv = abs(inv[0, 0]) * rx + abs(inv[0, 1]) * ry, abs(inv[1, 0]) * rx + abs(inv[1, 1]) * ry
    h, w = shape
    v0, v1 = max(int(np.floor(v - dv)) - 1, 0), min(int(np.ceil(v + dv)) + 2, h)
    u0, u1 = max(int(np.floor(u - du)) - 1, 0), min(int(np.ceil(u + du)) + 2, w)
    if v1 <= v0 or u1 <= u0:
        return None
    rows, cols = np.mgrid[v0:v1, u0:u1]
    return rows.ravel(), cols.ravel()


def ere_and_p_large(cm: CombinedMap, points_px=None, radius_mm: float = LARGE_ERROR_MM,
                    floor: float = ERE_PIXEL_FLOOR) -> tuple[np.ndarray, np.ndarray]:
    """((L,) ERE mm, (L,) P(error > radius_mm)) of each combined map from its point (`points_px`, default
    the map's own): weighted.ere_mm and weighted.error_probability over `cells`, read on the grids
    (the ERE's few dense cells; P as one minus the mass within the radius, read in a window)."""
    points = cm.points_px if points_px is None else np.asarray(points_px, dtype=np.float64)
    ere, p = np.full(len(cm.crops), np.nan), np.full(len(cm.crops), np.nan)
    for i, point in enumerate(points):
        if not np.all(np.isfinite(point)):
            continue
        g = grids(cm, i)
        top = max(float(z.max()) / a for z, a, _ in g)
        num = den = total = within = 0.0
        for z, a, affine in g:
            rows, cols = np.nonzero(z / a >= floor * top)
            m = z[rows, cols]
            num += float((m * _distances_mm(cm, affine, rows, cols, point)).sum())
            den += float(m.sum())
            total += float(z.sum())
            near = _window(cm, affine, z.shape, point, radius_mm)
            if near is not None:
                within += float(z[near][_distances_mm(cm, affine, *near, point) <= radius_mm].sum())
        ere[i], p[i] = num / den, float(np.clip((total - within) / total, 0.0, 1.0))
    return ere, p


def ere_mm(cm: CombinedMap, points_px=None) -> np.ndarray:
    """(L,) expected radial error of each combined map from its point."""
    return ere_and_p_large(cm, points_px)[0]


def error_probability(cm: CombinedMap, radius_mm: float = LARGE_ERROR_MM, points_px=None) -> np.ndarray:
    """(L,) P(error > radius_mm) read from each combined map."""
    return ere_and_p_large(cm, points_px, radius_mm)[1]


def _region_density(g: list, mass: float) -> float:
    """weighted.region_density over the grids' cells, sorting only the densest: the cells at least a
    fraction of the top density, lowered until they hold more than `mass` (a peaked map's region is a
    few hundred of its 200,000 cells).  Every cell above the cut is kept, so the order is the full one's."""
    d = np.concatenate([(z / a).ravel() for z, a, _ in g])
    m = np.concatenate([z.ravel() for z, _, _ in g])
    goal, top, cut = mass * float(m.sum()), float(d.max()), 1e-3
    while True:
        which = np.nonzero(d >= top * cut)[0] if cut > 0 else np.arange(d.size)
        order = which[np.argsort(-d[which], kind="stable")]
        cum = np.cumsum(m[order])
        j = int(np.searchsorted(cum, goal))
        if j + 1 < len(order) or cut == 0:
            j = min(j, len(order) - 1)
            below = d[order[j + 1]] if j + 1 < len(order) else 0.0
            return float((d[order[j]] + below) / 2)
        cut = cut * 1e-3 if cut > 1e-12 else 0.0


def _region_cells(g: list, t: float) -> list:
    """Per grid, (rows, cols) of the cells denser than t; the densest cells when none is (a flat map)."""
    out = [np.nonzero(z / a > t) for z, a, _ in g]
    if not any(len(r) for r, _ in out):
        top = max(float((z / a).max()) for z, a, _ in g)
        out = [np.nonzero(z / a >= top) for z, a, _ in g]
    return out


def region_extent(cm: CombinedMap, i: int, mass: float, point_px=None) -> tuple[float, float]:
    """(area mm², largest distance mm from the point) of the smallest region of landmark i's combined map
    holding `mass` (measures.region_extent on one grid)."""
    point = cm.points_px[i] if point_px is None else np.asarray(point_px, dtype=np.float64)
    g = grids(cm, i)
    area, far = 0.0, 0.0
    for (_, a, affine), (rows, cols) in zip(g, _region_cells(g, _region_density(g, mass)), strict=True):
        area += len(rows) * a
        if len(rows):
            far = max(far, float(_distances_mm(cm, affine, rows, cols, point).max()))
    return float(area), far


def density_at(cm: CombinedMap, i: int, xy_px) -> float:
    """Landmark i's combined density (per mm²) at an image point: the fine map's inside the crop
    (nearest crop pixel), the coarse map's outside it (nearest coarse pixel); 0 off both."""
    crop = cm.crops[i]
    if crop.contains(np.asarray(xy_px, dtype=np.float64)):
        u, v = np.clip(np.round(crop.image_to_crop(xy_px)).astype(int), 0, np.array(crop.size) - 1)
        return float(cm.inside_mass[i] * cm.fine[i][v, u] / crop.pixel_area_mm2())
    inv = np.linalg.inv(cm.model_to_image)
    u, v = np.round(inv[:2, :2] @ np.asarray(xy_px, dtype=np.float64) + inv[:2, 2]).astype(int)
    h, w = cm.coarse.shape[1:]
    if not (0 <= u < w and 0 <= v < h):
        return 0.0
    return float(cm.coarse[i][v, u] / coarse_area_mm2(cm.model_to_image, cm.spacing_mm))


def region_scores(cm: CombinedMap, truth_px) -> np.ndarray:
    """(L,) conformity scores of the true points (the mass of the smallest region holding each)."""
    out = []
    for i, xy in enumerate(np.asarray(truth_px, dtype=np.float64)):
        _, mass, area = cells(cm, i)
        out.append(weighted.region_score(mass, area, density_at(cm, i, xy)))
    return np.array(out)


def sample_points_px(cm: CombinedMap, i: int, n: int, rng: np.random.Generator, jitter: bool = True) -> np.ndarray:
    """(n, 2) image points drawn from landmark i's combined map: a cell by its mass (one uniform draw
    each, inverse CDF, as measurement_uncertainty.sample_pixels), then uniformly within it (a second
    draw (n, 2); jitter=False: the cell's centre): what the measurement intervals sample."""
    g = grids(cm, i)
    sizes = [z.size for z, _, _ in g]
    cdf = np.cumsum(np.concatenate([z.ravel() for z, _, _ in g]))
    if not np.isfinite(cdf[-1]) or cdf[-1] <= 0:
        raise ValueError("a combined map holds no probability")
    idx = np.minimum(np.searchsorted(cdf, rng.random(n) * cdf[-1], side="right"), cdf.size - 1)
    offset = rng.random((n, 2)) - 0.5 if jitter else np.zeros((n, 2))
    out = np.empty((n, 2))
    start = 0
    for (z, _, affine), size in zip(g, sizes, strict=True):
        here = (idx >= start) & (idx < start + size)
        k = idx[here] - start
        w = z.shape[1]
        out[here] = _to_image(affine, k % w + offset[here, 0], k // w + offset[here, 1])
        start += size
    return out


def _kept_parts(g: list, t: float, crop_edge: np.ndarray) -> tuple[list, float]:
    """([keep mask per grid], mass dropped) of the region {cell mass > t x cell area} over both grids:
    its connected parts on each grid, a part kept when it holds at least MIN_PART_SHARE of the
    region's mass, is the heaviest part, or (on the coarse grid) touches the crop, where it continues
    the fine grid's region."""
    from scipy import ndimage

    parts = []  # (grid, labels, label, mass, touches the crop)
    labelled = []
    for k, (z, cell_area, _) in enumerate(g):
        labels, n = ndimage.label(z > t * cell_area, structure=np.ones((3, 3), dtype=bool))
        labelled.append(labels)
        if not n:
            continue
        mass = ndimage.sum_labels(z, labels, index=np.arange(1, n + 1))
        touching = set(np.unique(labels[crop_edge])) if k == 0 else set()
        parts += [(k, j + 1, float(mass[j]), (j + 1) in touching) for j in range(n)]
    if not parts:
        return [np.zeros(z.shape, dtype=bool) for z, _, _ in g], 0.0
    total = sum(p[2] for p in parts)
    heaviest = max(range(len(parts)), key=lambda q: parts[q][2])
    keep = [np.zeros(z.shape, dtype=bool) for z, _, _ in g]
    dropped = 0.0
    for q, (k, label, mass, touches) in enumerate(parts):
        if q == heaviest or touches or mass >= MIN_PART_SHARE * total:
            keep[k] |= labelled[k] == label
        else:
            dropped += mass
    return keep, dropped


def drawn_contours(cm: CombinedMap, i: int, masses: dict) -> tuple[dict, dict]:
    """({level: lines image px}, {level: dropped mass}) as regions.drawn_regions gives them for one grid,
    for LazyContours: a region not localised (regions.localised: its area) is not drawn; a drawn one
    keeps its connected parts holding at least MIN_PART_SHARE of its mass (_kept_parts), and the
    mass of the parts left out is reported (the combined map sums to one)."""
    from scipy import ndimage

    g = grids(cm, i)
    crop_px = inside_mask(cm.coarse.shape[1:], cm.model_to_image, cm.crops[i])
    crop_edge = ndimage.binary_dilation(crop_px, structure=np.ones((3, 3), dtype=bool)) & ~crop_px
    lines, dropped = {}, {}
    for level, m in masses.items():
        lines[level], dropped[level] = [], 0.0
        t = _region_density(g, m)
        area_mm2 = sum(len(rows) * a for (_, a, _), (rows, _) in zip(g, _region_cells(g, t), strict=True))
        if not localised(area_mm2):  # region_extent's area, from the grids and density already at hand
            continue
        keep, dropped[level] = _kept_parts(g, t, crop_edge)
        for (z, cell_area, to_image), kept in zip(g, keep, strict=True):
            lines[level] += [np.asarray(c) @ to_image[:2, :2].T + to_image[:2, 2]
                             for c in lines_on_crop(z, t * cell_area, kept)]
    return lines, dropped


def shifted(cm: CombinedMap, coarse, shifts_px) -> CombinedMap:
    """The combined map with each landmark's whole distribution moved by (dx, dy) image pixels (clinic
    convention offsets): `coarse` the coarse maps already moved (network.heatmaps.shift_maps), the
    crops and points moved by the same amounts."""
    shifts = np.asarray(shifts_px, dtype=np.float64).reshape(-1, 2)
    crops = [replace(c, centre_px=(c.centre_px[0] + dx, c.centre_px[1] + dy))
             for c, (dx, dy) in zip(cm.crops, shifts, strict=True)]
    coarse = np.asarray(coarse, dtype=np.float64)
    coarse = (coarse / coarse.sum(axis=(1, 2), keepdims=True)).astype(np.float32)
    return replace(cm, coarse=coarse, crops=crops, points_px=cm.points_px + shifts)


def npz_arrays(cm: CombinedMap) -> dict:
    """What a format 2 heatmaps file adds to format 1's arrays (the coarse maps are format 1's `probs`)."""
    return {"format": np.array(FORMAT), "model_to_image": cm.model_to_image, "spacing_mm": cm.spacing_mm,
            "fine": cm.fine.astype(np.float32), "crops": np.stack([c.to_array() for c in cm.crops]),
            "inside_mass": cm.inside_mass, "refined": cm.refined, "points_px": cm.points_px}


def is_combined(z) -> bool:
    """Whether an open npz file (np.load) is a format 2 heatmaps file."""
    return "format" in z.files and str(z["format"]) == FORMAT


def from_npz(z, coarse=None) -> CombinedMap:
    """The combined map in an open format 2 npz file; `coarse`: its coarse maps when already read."""
    coarse = (z["probs"] if "probs" in z.files else z["coarse"]) if coarse is None else coarse
    return CombinedMap(np.asarray(coarse, dtype=np.float32), z["model_to_image"], z["spacing_mm"], z["fine"],
                       [CropFrame.from_array(a) for a in z["crops"]], z["inside_mass"], z["refined"].astype(bool),
                       z["points_px"])


def save_npz(path, cm: CombinedMap) -> None:
    """Write the combined map alone (format in the module docstring); `path` is written as given."""
    with open(path, "wb") as f:
        np.savez_compressed(f, probs=cm.coarse.astype(np.float32), **npz_arrays(cm))


def load_npz(path) -> CombinedMap:
    """Read the combined map of a format 2 file; ValueError naming the problem for another format."""
    with np.load(path, allow_pickle=False) as z:
        if not is_combined(z):
            raise ValueError(f"{path} is not a combined heatmaps file ({FORMAT})")
        return from_npz(z)
