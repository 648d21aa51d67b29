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

Heatmaps file (FORMAT, NAME.heatmaps.npz, `save_npz` / `load_npz`): `format` (str),
`coarse` (L, H, W) float32, `model_to_image` (3, 3) the coarse grid's pixel -> image pixel
affine, `spacing_mm` (2,), `fine` (L, h, w) float32, `crops` (L, 7) CropFrame.to_array rows,
`inside_mass` (L,), `refined` (L,) bool, `points_px` (L, 2).
"""

from dataclasses import dataclass

import numpy as np

from ..imaging.crops import CropFrame
from ..uncertainty import weighted
from ..uncertainty.levels import LARGE_ERROR_MM

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


def ere_mm(cm: CombinedMap) -> np.ndarray:
    """(L,) expected radial error of each combined map from its point."""
    out = []
    for i in range(len(cm.crops)):
        pos, mass, area = cells(cm, i)
        out.append(weighted.ere_mm(pos, mass, area, cm.points_px[i] * cm.spacing_mm))
    return np.array(out)


def error_probability(cm: CombinedMap, radius_mm: float = LARGE_ERROR_MM) -> np.ndarray:
    """(L,) P(error > radius_mm) read from each combined map."""
    out = []
    for i in range(len(cm.crops)):
        pos, mass, _ = cells(cm, i)
        out.append(weighted.error_probability(pos, mass, cm.points_px[i] * cm.spacing_mm, radius_mm))
    return np.array(out)


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


def sample_points_px(cm: CombinedMap, i: int, n: int, rng: np.random.Generator) -> np.ndarray:
    """(n, 2) image points drawn from landmark i's combined map: a cell by its mass, then uniformly
    within it (what the measurement intervals sample, cephalometry/measurement_uncertainty.py)."""
    pos, mass, area = cells(cm, i)
    k = rng.choice(len(mass), size=n, p=mass / mass.sum())
    side_mm = np.sqrt(area[k])[:, None]
    return (pos[k] + (rng.random((n, 2)) - 0.5) * side_mm) / cm.spacing_mm


def contours_px(cm: CombinedMap, i: int, masses: dict) -> dict:
    """{level: [polyline (K, 2) image px, ...]}: the boundaries of the smallest regions of landmark i's
    combined map holding each mass, traced on the coarse map outside the crop and on the fine map
    inside it at the same density (the lines meet at the crop's border only where both grids agree)."""
    import contourpy

    _, mass, area = cells(cm, i)
    crop = cm.crops[i]
    coarse = np.where(inside_mask(cm.coarse.shape[1:], cm.model_to_image, crop), 0.0, cm.coarse[i].astype(np.float64))
    fine = cm.inside_mass[i] * cm.fine[i].astype(np.float64)
    grids = [(coarse, coarse_area_mm2(cm.model_to_image, cm.spacing_mm), np.asarray(cm.model_to_image)),
             (fine, crop.pixel_area_mm2(), crop.crop_to_image_matrix())]
    out = {}
    for level, m in masses.items():
        t = weighted.region_density(mass, area, m)
        lines = []
        for z, cell_area, to_image in grids:
            if z.max() <= t * cell_area:
                continue
            gen = contourpy.contour_generator(z=z, line_type=contourpy.LineType.Separate)
            lines += [np.asarray(c) @ to_image[:2, :2].T + to_image[:2, 2] for c in gen.lines(t * cell_area)]
        out[level] = lines
    return out


def save_npz(path, cm: CombinedMap) -> None:
    """Write the combined map (format in the module docstring); `path` is written as given."""
    with open(path, "wb") as f:
        np.savez_compressed(f, format=np.array(FORMAT), coarse=cm.coarse.astype(np.float32),
                            model_to_image=cm.model_to_image, spacing_mm=cm.spacing_mm,
                            fine=cm.fine.astype(np.float32), crops=np.stack([c.to_array() for c in cm.crops]),
                            inside_mass=cm.inside_mass, refined=cm.refined, points_px=cm.points_px)


def load_npz(path) -> CombinedMap:
    """Read a file save_npz wrote; ValueError naming the problem for another format."""
    with np.load(path, allow_pickle=False) as z:
        if "format" not in z.files or str(z["format"]) != FORMAT:
            raise ValueError(f"{path} is not a combined heatmaps file ({FORMAT})")
        return CombinedMap(z["coarse"], z["model_to_image"], z["spacing_mm"], z["fine"],
                           [CropFrame.from_array(a) for a in z["crops"]], z["inside_mass"], z["refined"].astype(bool),
                           z["points_px"])
