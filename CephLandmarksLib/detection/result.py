"""The result of a detection (points, uncertainty, heatmaps) and its files; needs no torch.

`Detection` is what `LandmarkDetector.detect` returns and what the outputs, the report and
the Slicer module read.  `save_heatmaps` / `load_detection` carry a Detection from the
process that ran the network to one that only shows it (Slicer's main process): the CLI's
JSON plus NAME.heatmaps.npz with the calibrated maps, the model frame and the contours
(format 1); with the second stage, also the fine maps and their crops (format 2,
detection/combined_map.py), read back as the Detection's `combined` map.
"""

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import CephError
from ..files import atomic_write
from ..imaging.geometry import FRAMING_FIT, ModelFrame, px_to_lps
from ..uncertainty.flag_score import threshold_fraction
from ..uncertainty.levels import CONTOUR_LEVELS, LARGE_ERROR_MM
from ..uncertainty.regions import LazyContours, dropped_mass
from .combined_map import FLAG_OUTSIDE_CROP, from_npz, is_combined, npz_arrays  # noqa: F401 - FLAG_ re-exported

NEAR_EDGE_MM = LARGE_ERROR_MM  # within this of the border, a large error may hide beyond it
RIGHT_FACING = "right-facing"
LEFT_FACING = "left-facing (mirrored for detection)"
HEATMAPS_SUFFIX = ".heatmaps.npz"
# Why a point is flagged (LandmarkResult.flag_reasons, in this order):
FLAG_UNCERTAIN = "uncertain"  # the flag rule's score over its threshold (Detection.flag_rule)
FLAG_MISSING = "missing"  # outside the image
FLAG_IMPLAUSIBLE = "implausible"  # far from where the confident landmarks put it (shape check)
FLAG_NEAR_EDGE = "near_edge"  # within NEAR_EDGE_MM of the image's border
# FLAG_OUTSIDE_CROP (combined_map.py): second stage, the coarse mass lies mostly outside the crop (coarse point kept)


@dataclass
class LandmarkResult:
    index: int  # 1-based
    name: str
    abbreviation: str
    x_px: float
    y_px: float
    x_mm: float
    y_mm: float
    confidence: float  # the heatmap's maximum probability (calibrated)
    ere_mm: float  # expected radial error
    flagged: bool  # uncertain (Detection.flag_rule), missing, implausible or near the edge
    # {"50": [(K, 2) x, y image px], "90": [...]}: the drawn regions (uncertainty/regions.py), computed
    # when first read (a LazyContours, with the mass of the fragments not drawn) or a plain dict
    contours_px: dict = field(default_factory=dict)
    missing: bool = False  # outside the image: x/y are NaN (None in JSON) and the point is flagged
    p_large_error: float = float("nan")  # P(error > LARGE_ERROR_MM, 4 mm), from the calibrated heatmap
    flag_reasons: list = field(default_factory=list)  # FLAG_* strings; empty when not flagged
    region_90_area_mm2: float = float("nan")  # area of the "90 %" region (conformal where calibrated)
    region_90_max_distance_mm: float = float("nan")  # how far that region reaches from the point
    refined: bool | None = None  # second stage: the point is the fine map's (False: the coarse one); None: no refiner

    def to_json_dict(self) -> dict:
        keys = ("index", "name", "abbreviation", "x_px", "y_px", "x_mm", "y_mm", "confidence", "ere_mm", "flagged")
        d = {k: getattr(self, k) for k in keys}
        for k in ("x_px", "y_px", "x_mm", "y_mm", "ere_mm"):
            d[k] = round(float(d[k]), 3) if np.isfinite(d[k]) and not (self.missing and k != "ere_mm") else None
        d["confidence"] = round(float(d["confidence"]), 4)
        d["flagged"] = bool(d["flagged"])
        if np.isfinite(self.p_large_error):
            d["p_large_error"] = round(float(self.p_large_error), 6)
        d["flag_reasons"] = list(self.flag_reasons)
        for k in ("region_90_area_mm2", "region_90_max_distance_mm"):
            if np.isfinite(getattr(self, k)):
                d[k] = round(float(getattr(self, k)), 3)
        if self.missing:
            d["missing"] = True
        if self.refined is not None:
            d["refined"] = bool(self.refined)
        return d


@dataclass
class Detection:
    image_path: str
    image_size: tuple  # (width, height)
    spacing_mm: tuple
    spacing_source: str
    model: dict  # {"name", "version", "sha256"}
    ere_threshold_mm: float
    landmarks: list
    probs: np.ndarray  # (L, h, w) calibrated heatmaps in model pixels
    frame: ModelFrame
    origin_lps: tuple = (0.0, 0.0, 0.0)
    direction_lps: tuple = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0)
    extra: dict = field(default_factory=dict)  # further JSON sections (e.g. measurements, analyses)
    framing: str = FRAMING_FIT  # "physical" or "fit-width" (network.inputs.framing_for)
    orientation: str = RIGHT_FACING  # or LEFT_FACING
    # {"shift_model_px"} (second pass kept), {"implausible": [...]}, {"near_edge": [...]} (abbreviations)
    alignment: dict = field(default_factory=dict)
    large_error_mm: float = LARGE_ERROR_MM  # the radius of the landmarks' p_large_error
    regions: dict = field(default_factory=dict)  # {"method": "split-conformal" | "nominal", "masses": {...}}
    # What "uncertain" means: {"score": "ere_mm" | "p_large_error", "threshold": t} (empty: ERE > ere_threshold_mm),
    # with "image_weight": w when P is adjusted for the image's other landmarks (flag_score.image_adjusted_p_large)
    flag_rule: dict = field(default_factory=dict)
    # The second stage: the combined coarse + fine map (detection/combined_map.CombinedMap; its coarse maps
    # are `probs`) that the points, ERE, P, regions and measurement intervals read, and the JSON's "refiner"
    # (file, sha256, base model, crop, how many points are the fine map's, which kept the coarse one)
    combined: object = None
    refiner: dict = field(default_factory=dict)

    def flag_rule_text(self) -> str:
        """The uncertainty flag's rule in words: "ERE > 1.52 mm", "P(error > 4 mm) ≥ 2 %" or, adjusted,
        "P(error > 4 mm), weighed with the image's other points, ≥ 1.6 %"."""
        if self.flag_rule.get("score") == "p_large_error":
            weighed = ", weighed with the image's other points," if self.flag_rule.get("image_weight") else ""
            # a fitted 0.0138.. reads 1.38 %
            return f"P(error > {self.large_error_mm:g} mm){weighed} ≥ {100 * self.flag_rule['threshold']:.3g} %"
        return f"ERE > {self.ere_threshold_mm:.2f} mm"

    def flag_fractions(self) -> np.ndarray:
        """(L,) each point's flag score as a fraction of the flag rule's threshold (1: at it): what
        colours a point from confident to flagged, by the rule this detection flags by."""
        lms = self.landmarks
        return threshold_fraction(self.flag_rule, [lm.ere_mm for lm in lms], [lm.p_large_error for lm in lms],
                                  [lm.missing for lm in lms], self.ere_threshold_mm)

    @property
    def points_px(self) -> np.ndarray:
        return np.array([[lm.x_px, lm.y_px] for lm in self.landmarks])

    @property
    def points_lps(self) -> np.ndarray:
        return px_to_lps(self.points_px, self.spacing_mm, self.origin_lps, self.direction_lps)

    def warnings(self) -> list:
        """What the user must know about this detection, in words (the JSON's "warnings")."""
        warnings = []
        if self.spacing_source == "assumed":
            warnings.append("the image has no pixel spacing; 0.1 mm per pixel was assumed (use --spacing)")
        if self.framing == FRAMING_FIT:
            warnings.append("the pixel spacing is unknown: the image was fitted to the model's width instead of "
                            "resampled to the model's millimetres per pixel; anatomy of unusual size may be missed")
        if self.orientation == LEFT_FACING:
            warnings.append("the profile faces left: the image was mirrored for detection and the points mapped back")
        missing = [lm.abbreviation for lm in self.landmarks if lm.missing]
        if missing:
            warnings.append(f"landmarks outside the image (reported missing): {', '.join(missing)}")
        if self.alignment.get("near_edge"):
            warnings.append(f"landmarks within {NEAR_EDGE_MM:g} mm of the image's edge (flagged: the anatomy may be "
                            f"cut off): {', '.join(self.alignment['near_edge'])}")
        return warnings

    def to_json_dict(self) -> dict:
        out = {
            "image": self.image_path,
            "image_size_px": list(self.image_size),
            "spacing_mm": [float(s) for s in self.spacing_mm],
            "spacing_source": self.spacing_source,
            "model": dict(self.model),
            "ere_threshold_mm": round(float(self.ere_threshold_mm), 3),
            "large_error_mm": self.large_error_mm,
            "framing": self.framing,
            "orientation": self.orientation,
            **({"alignment": self.alignment} if self.alignment else {}),
            **({"regions": self.regions} if self.regions else {}),
            **({"flag_rule": self.flag_rule} if self.flag_rule else {}),
            **({"refiner": self.refiner} if self.refiner else {}),
            "landmarks": [lm.to_json_dict() for lm in self.landmarks],
        }
        warnings = self.warnings()
        if warnings:
            out["warnings"] = warnings
        out.update(self.extra)
        if "measurements" not in out and len(self.landmarks) == 19:  # the 19 ISBI landmarks
            from ..cephalometry.measurement_uncertainty import detection_measurements_json

            out["measurements"] = detection_measurements_json(self)
        if "analyses" not in out and len(self.landmarks) == 19:  # the default set, shipped norms
            from ..cephalometry.detection_analyses import analyses_sections

            out.update(analyses_sections(self))
        return out


def _frame_array(frame: ModelFrame) -> np.ndarray:
    return np.array([*frame.image_size, *frame.model_size, *frame.scaled_size, *frame.offset, int(frame.mirror_x)],
                    dtype=np.int64)


def _frame_from_array(a) -> ModelFrame:
    a = [int(v) for v in a]
    return ModelFrame((a[0], a[1]), (a[2], a[3]), (a[4], a[5]), (a[6], a[7]), bool(a[8]))


def save_heatmaps(path, detection: Detection) -> None:
    """NAME.heatmaps.npz: calibrated maps (L, h, w) float32, the model frame, the contours (image px).

    Contours are stored flat: `contour_points` (N, 2) and `contour_index` rows
    (landmark, level, start, stop) into it; `contour_dropped_mass` (L, levels) the mass of the
    fragments not drawn (uncertainty/regions.py).  With a combined map (second stage) the file is
    format 2: these arrays (`probs` the coarse maps) plus combined_map.npz_arrays.
    """
    points, index, start = [], [], 0
    dropped = np.zeros((len(detection.landmarks), len(CONTOUR_LEVELS)))
    for i, lm in enumerate(detection.landmarks):
        for k, level in enumerate(CONTOUR_LEVELS):
            dropped[i, k] = dropped_mass(lm.contours_px).get(level, 0.0)
            for line in lm.contours_px.get(level, []):
                line = np.asarray(line, dtype=np.float64).reshape(-1, 2)
                points.append(line)
                index.append((i, k, start, start + len(line)))
                start += len(line)
    arrays = {
        "probs": np.asarray(detection.probs, dtype=np.float32),
        "frame": _frame_array(detection.frame),
        "contour_points": np.concatenate(points) if points else np.zeros((0, 2)),
        "contour_index": np.asarray(index, dtype=np.int64).reshape(-1, 4),
        "contour_dropped_mass": dropped,
        **(npz_arrays(detection.combined) if detection.combined is not None else {}),
    }

    def write(tmp):
        with open(tmp, "wb") as f:
            np.savez(f, **arrays)

    atomic_write(path, write)


def _landmark_from_json(d: dict, contours: dict) -> LandmarkResult:
    nan = float("nan")
    value = lambda k: nan if d.get(k) is None else float(d[k])  # noqa: E731
    return LandmarkResult(
        int(d["index"]), d["name"], d["abbreviation"], value("x_px"), value("y_px"), value("x_mm"), value("y_mm"),
        float(d["confidence"]), value("ere_mm"), bool(d["flagged"]), contours, bool(d.get("missing", False)),
        value("p_large_error"), list(d.get("flag_reasons", [])), value("region_90_area_mm2"),
        value("region_90_max_distance_mm"), None if d.get("refined") is None else bool(d["refined"]))


def load_detection(json_path, heatmaps_path=None) -> Detection:
    """The Detection written by `ceph-landmarks detect --heatmaps` (JSON + NAME.heatmaps.npz, format 1
    or 2: a format 2 file's combined map becomes the Detection's `combined`)."""
    json_path = Path(json_path)
    heatmaps_path = Path(heatmaps_path) if heatmaps_path else json_path.with_name(
        json_path.name[: -len(".json")] + HEATMAPS_SUFFIX)
    try:
        d = json.loads(json_path.read_text(encoding="utf-8"))
        with np.load(heatmaps_path, allow_pickle=False) as z:
            probs, frame = z["probs"], _frame_from_array(z["frame"])
            contour_points, contour_index = z["contour_points"], z["contour_index"]
            dropped = z["contour_dropped_mass"] if "contour_dropped_mass" in z.files else None
            combined = from_npz(z, probs) if is_combined(z) else None
    except (OSError, ValueError, KeyError) as e:
        raise CephError(f"cannot read the detection {json_path.name}: {e}") from None
    contours = [{} for _ in d["landmarks"]]
    for i, k, a, b in contour_index:
        contours[i].setdefault(CONTOUR_LEVELS[k], []).append(contour_points[a:b])
    if dropped is not None:  # files written before the region rule hold no dropped mass
        contours = [LazyContours(lines=c, dropped_mass=dict(zip(CONTOUR_LEVELS, (float(v) for v in row),
                                                                  strict=True)))
                    for c, row in zip(contours, dropped, strict=True)]
    landmarks = [_landmark_from_json(lm, c) for lm, c in zip(d["landmarks"], contours, strict=True)]
    known = {"image", "image_size_px", "spacing_mm", "spacing_source", "model", "ere_threshold_mm", "large_error_mm",
             "framing", "orientation", "alignment", "landmarks", "warnings", "regions", "flag_rule", "refiner"}
    return Detection(
        d["image"], tuple(d["image_size_px"]), tuple(d["spacing_mm"]), d["spacing_source"], d["model"],
        float(d["ere_threshold_mm"]), landmarks, probs, frame, extra={k: v for k, v in d.items() if k not in known},
        framing=d.get("framing", FRAMING_FIT), orientation=d.get("orientation", RIGHT_FACING),
        alignment=d.get("alignment", {}), large_error_mm=float(d.get("large_error_mm", LARGE_ERROR_MM)),
        regions=d.get("regions", {}), flag_rule=d.get("flag_rule", {}), combined=combined,
        refiner=d.get("refiner", {}))
