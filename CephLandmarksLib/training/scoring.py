"""Scoring what detect produces on annotated images: the cases, their outcome under given
detect.Settings, and the figures every table reports (MRE, SDR, region coverage, flags).

Calibration, clinic adaptation and the benchmarks all score through LandmarkDetector.decide,
the step `detect` runs, so "flagged" and "covered" mean the same in every table.
"""

from dataclasses import dataclass, field

import numpy as np

from ..detection import combined_map as cmap
from ..detection.predictor import LandmarkDetector, Observation
from ..imaging.images import read_radiograph
from ..uncertainty.conformal import NOMINAL_MASSES, covered, region_scores
from ..uncertainty.levels import LARGE_ERROR_MM
from .metrics import finite_mean, radial_errors_mm

GOOD_ERROR_MM = 2.0  # "points within 2 mm": flagging them is the cost of the flags


@dataclass
class Case:
    """One annotated clinic image, observed once by the network."""

    id: str
    obs: Observation
    true_px: np.ndarray  # (L, 2) image pixels
    base_uv: np.ndarray | None = None  # (L, 2) the base settings' points, model pixels (adaptation fills it)
    logit_histogram: tuple | None = field(default=None, repr=False)  # (adaptation fills it)
    encoded: tuple | None = field(default=None, repr=False)  # the encoder's outputs (fine-tune needs them)

    @property
    def true_uv(self) -> np.ndarray:
        return self.obs.frame.image_to_model(self.true_px)

    @property
    def mm_per_px(self) -> np.ndarray:
        return self.obs.frame.model_pixel_mm(self.obs.image["spacing_mm"])


@dataclass
class Outcome:
    """Per (image, landmark) results of detection settings on annotated cases."""

    errors_mm: np.ndarray  # (n, L)
    ere_mm: np.ndarray  # (n, L)
    flagged: np.ndarray  # (n, L)
    scores: np.ndarray  # (n, L) conformal scores of the true points
    masses: dict  # {"50": (n, L), "90": (n, L)} the masses drawn for each image
    p_large: np.ndarray  # (n, L) P(error > LARGE_ERROR_MM) read from each calibrated map
    settings: list = field(default_factory=list)  # the Settings each case was decided with

    def coverage(self, level: str) -> np.ndarray:
        return covered(self.scores, self.masses[level])

    def subset(self, rows) -> "Outcome":
        rows = list(rows)
        return Outcome(self.errors_mm[rows], self.ere_mm[rows], self.flagged[rows], self.scores[rows],
                       {k: m[rows] for k, m in self.masses.items()}, self.p_large[rows],
                       [self.settings[i] for i in rows])


def observe_each(detector: LandmarkDetector, samples, progress=None):
    """Cases for dataset samples (datasets.Sample), one at a time: the network run once on each.
    A caller that keeps only figures holds one observation (its logits) at a time."""
    for k, s in enumerate(samples):
        if progress:
            progress(k / len(samples), f"running the model on {s.id}")
        obs = detector.observe(read_radiograph(s.image_path, s.spacing_mm))
        yield Case(s.id, obs, np.asarray(s.landmarks_px, dtype=np.float64))


def observe_samples(detector: LandmarkDetector, samples, progress=None) -> list:
    """Cases for dataset samples (datasets.Sample): the network run once on each."""
    return list(observe_each(detector, samples, progress))


def point_errors_mm(det, true_px) -> np.ndarray:
    """(L,) radial errors of a detection's points against the truth (image pixels); a point reported
    missing (no coordinates) is a miss: its error is infinite."""
    err = radial_errors_mm(det.points_px, true_px, det.spacing_mm)
    return np.where(np.isnan(err), np.inf, err)


def true_point_scores(det, case: Case) -> np.ndarray:
    """(L,) conformity scores of a case's true points in a detection's maps: the combined coarse + fine
    map's with the second stage, else the coarse maps'."""
    if det.combined is not None:
        return cmap.region_scores(det.combined, case.true_px)
    return region_scores(det.probs, case.true_uv)


def outcome(detector: LandmarkDetector, cases, settings) -> Outcome:
    """Decide every case with its settings (one Settings, or one per case) and score it."""
    per_case = settings if isinstance(settings, list) else [settings] * len(cases)
    rows = []
    for case, s in zip(cases, per_case, strict=True):
        det = detector.decide(case.obs, s, contours=False, extents=False)
        err = point_errors_mm(det, case.true_px)
        scores = true_point_scores(det, case)
        rows.append((err, [lm.ere_mm for lm in det.landmarks], [lm.flagged for lm in det.landmarks], scores,
                     {k: np.asarray(m) for k, m in s.region_masses.items()},
                     [lm.p_large_error for lm in det.landmarks]))
    err, ere, flagged, scores, masses, p_large = zip(*rows, strict=True)
    return Outcome(np.array(err), np.array(ere), np.array(flagged), np.array(scores),
                   {k: np.stack([m[k] for m in masses]) for k in NOMINAL_MASSES}, np.array(p_large), per_case)


def measurement_coverage(detector: LandmarkDetector, cases, out: Outcome) -> dict:
    """{measurement key: % of cases whose true value lies in the detection's 90 % interval}."""
    from ..cephalometry.measurement_uncertainty import measure_detection
    from ..cephalometry.measurements import MEASUREMENTS
    from ..imaging.geometry import px_to_mm

    hits = {m.key: [] for m in MEASUREMENTS}
    for case, s in zip(cases, out.settings, strict=True):
        det = detector.decide(case.obs, s, contours=False, extents=False)
        true = {m.key: m(px_to_mm(case.true_px, det.spacing_mm)) for m in MEASUREMENTS}
        for r in measure_detection(det):
            hits[r["key"]].append(r["p05"] <= true[r["key"]] <= r["p95"])
    return {k: float(100 * np.mean(v)) for k, v in hits.items() if v}


def figures(out: Outcome, names=None) -> dict:
    """Pooled and per-landmark figures of an Outcome (the adapted model's record and the report)."""
    e = out.errors_mm
    large, good = e > LARGE_ERROR_MM, e <= GOOD_ERROR_MM

    def pct(x, where=None):
        x = np.asarray(x, dtype=float) if where is None else np.asarray(x, dtype=float)[where]
        return float(100 * x.mean()) if x.size else float("nan")

    pooled = {
        "n_points": int(e.size),
        "mre_mm": finite_mean(e),
        "sdr_2mm_percent": pct(e <= 2.0),
        "coverage_50_percent": pct(out.coverage("50")),
        "coverage_90_percent": pct(out.coverage("90")),
        "flagged_percent": pct(out.flagged),
        "large_errors_flagged_percent": pct(out.flagged, large),
        "good_points_flagged_percent": pct(out.flagged, good),
        "n_large_errors": int(large.sum()),
    }
    per = []
    for j in range(e.shape[1]):
        col = e[:, j]
        per.append({
            "landmark": names[j] if names else j + 1,
            "mre_mm": finite_mean(col),
            "sdr_2mm_percent": pct(col <= 2.0),
            "coverage_50_percent": pct(out.coverage("50")[:, j]),
            "coverage_90_percent": pct(out.coverage("90")[:, j]),
            "flagged_percent": pct(out.flagged[:, j]),
        })
    return dict(pooled, per_landmark=per)
