"""Uncertainty of the measurements, carried from the calibrated heatmaps by sampling.

Each landmark's calibrated heatmap is read as the distribution of its position.
Positions are drawn independently per landmark (inverse CDF on the flattened map,
then uniform jitter inside the drawn model pixel), mapped to image pixels with the
detection's ModelFrame and to mm with its spacing; every measurement is computed
on every draw.  A measurement is reported as its value at the detected points, the
median and the 5th-95th percentile interval of the draws (a 90 % interval), and the
share of draws in each class.  Independence ignores correlations between
landmarks; benchmarks/measurement_coverage.py checks whether the intervals hold.
With the second stage (a detection's `combined` map, detection/combined_map.py) each
position is drawn from the combined coarse + fine map instead: a cell by its mass, then
uniformly within the cell, the same two draws per landmark from the same stream.

After review, `measure_corrected` measures the *current* points: a landmark the
clinician corrected is taken as certain (every draw puts it exactly at its corrected
position), the others are drawn from their heatmaps with the very same random
stream as `measure_detection`, so an unedited detection gives identical numbers and a
correction changes only the measurements that use the corrected landmark.  Each
result then names the corrected landmarks it rests on ("corrected").
"""

from functools import cache

import numpy as np

from ..imaging.geometry import px_to_mm
from .measurements import MEASUREMENTS, class_probabilities

DEFAULT_SAMPLES = 2000
DEFAULT_SEED = 0
INTERVAL_PERCENTILES = (5.0, 95.0)
UNCERTAIN_BELOW = 0.8  # a class call is "uncertain" when its probability is below this


def sample_pixels(prob_map: np.ndarray, n: int, rng: np.random.Generator, jitter: bool = True) -> np.ndarray:
    """n positions (n, 2) as (u, v) model pixels drawn from one probability map (H, W)."""
    p = np.asarray(prob_map, dtype=np.float64)
    h, w = p.shape
    cdf = np.cumsum(p.ravel())
    if not np.isfinite(cdf[-1]) or cdf[-1] <= 0:
        raise ValueError("a heatmap holds no probability")
    idx = np.searchsorted(cdf, rng.random(n) * cdf[-1], side="right")
    idx = np.minimum(idx, h * w - 1)
    uv = np.column_stack([idx % w, idx // w]).astype(np.float64)
    if jitter:
        uv += rng.random((n, 2)) - 0.5
    return uv


def sample_landmarks_mm(detection, n: int = DEFAULT_SAMPLES, seed: int = DEFAULT_SEED, jitter: bool = True):
    """(n, L, 2) landmark configurations in mm (image axes) drawn from the detection's heatmaps (its
    combined map when the second stage made one)."""
    rng = np.random.default_rng(seed)
    combined = getattr(detection, "combined", None)
    if combined is not None:
        xy = np.stack([combined.sample_points_px(i, n, rng, jitter) for i in range(len(detection.landmarks))], axis=1)
        return px_to_mm(xy, detection.spacing_mm)
    uv = np.stack([sample_pixels(m, n, rng, jitter) for m in detection.probs], axis=1)  # (n, L, 2)
    return px_to_mm(detection.frame.model_to_image(uv), detection.spacing_mm)


def summarise(m, value: float, samples: np.ndarray) -> dict:
    """One measurement's report: detected value, median, 90 % interval, class probabilities."""
    lo, hi = np.percentile(samples, INTERVAL_PERCENTILES)
    out = {
        "key": m.key, "name": m.name, "unit": m.unit, "definition": m.definition, "source": m.source,
        "value": float(value), "median": float(np.median(samples)), "p05": float(lo), "p95": float(hi),
    }
    if m.classes:
        probs = class_probabilities(m, samples)
        best = int(np.argmax(probs))
        at_value = int(m.class_index(np.array([value]))[0])
        out.update({
            "classes": [{"code": c, "label": lab, "probability": float(pr)}
                        for (c, lab), pr in zip(m.classes, probs, strict=True)],
            "class": m.classes[best][0], "class_label": m.classes[best][1], "class_probability": float(probs[best]),
            "class_at_value": m.classes[at_value][0],
            "uncertain": bool(probs[best] < UNCERTAIN_BELOW),
        })
    return out


def measure_points(points_mm, samples_mm, measurements=MEASUREMENTS) -> list:
    """Reports for detected points (19, 2) mm and their draws (S, 19, 2) mm.

    A measurement whose value is not finite (it uses a landmark reported missing,
    whose position is NaN) is skipped.
    """
    values = [(m, m(points_mm)) for m in measurements]
    return [summarise(m, v, m(samples_mm)) for m, v in values if np.isfinite(v)]


def measure_detection(detection, n: int = DEFAULT_SAMPLES, seed: int = DEFAULT_SEED, jitter: bool = True) -> list:
    """Every measurement of a Detection, with uncertainty from its heatmaps (list of dicts)."""
    points_mm = px_to_mm(detection.points_px, detection.spacing_mm)
    return measure_points(points_mm, sample_landmarks_mm(detection, n, seed, jitter))


_PROBE = np.random.default_rng(12345).uniform(10.0, 200.0, (19, 2))  # any non-degenerate configuration


@cache
def landmarks_used(m) -> tuple:
    """0-based indices of the landmarks measurement m reads.

    Found by the rule that skips a measurement when a landmark is missing: m uses
    landmark i exactly when a NaN at i makes its value NaN (every formula in
    measurements.py combines each landmark it reads arithmetically).
    """
    if not np.isfinite(m(_PROBE)):
        raise ValueError(f"measurement {m.key} is not finite on the probe configuration")
    used = []
    for i in range(len(_PROBE)):
        p = _PROBE.copy()
        p[i] = np.nan
        with np.errstate(invalid="ignore"):
            if not np.isfinite(m(p)):
                used.append(i)
    return tuple(used)


def measure_corrected(detection, points_mm=None, corrected=(), n: int = DEFAULT_SAMPLES, seed: int = DEFAULT_SEED,
                      jitter: bool = True, measurements=MEASUREMENTS) -> list:
    """Measurements at the current points, landmarks in `corrected` held fixed (list of dicts).

    points_mm: (L, 2) current positions in mm (image axes), NaN for a landmark that is
    missing, deleted or not placed (its measurements are skipped); default: the
    detection's points.  corrected: 0-based indices of landmarks the clinician placed:
    every draw puts them exactly at points_mm (no sampling, a corrected point counts as
    certain).  The other landmarks are drawn from the detection's heatmaps with the same
    random stream as `measure_detection` (all maps are sampled, then the corrected ones
    overwritten), so with nothing corrected the numbers are identical to it.  Each result
    gets "corrected": the abbreviations of the corrected landmarks the measurement uses.
    """
    if points_mm is None:
        points_mm = px_to_mm(detection.points_px, detection.spacing_mm)
    points_mm = np.asarray(points_mm, dtype=np.float64)
    fixed = sorted({int(i) for i in corrected})
    samples = sample_landmarks_mm(detection, n, seed, jitter)
    if fixed:
        samples[:, fixed] = points_mm[fixed]
    names = [lm.abbreviation for lm in detection.landmarks]
    results = []
    for m in measurements:
        value = m(points_mm)
        if not np.isfinite(value):
            continue
        r = summarise(m, value, m(samples))
        r["corrected"] = [names[i] for i in landmarks_used(m) if i in fixed]
        results.append(r)
    return results


COMBINED_METHOD = ("landmark positions drawn independently from each combined coarse + fine map of the second "
                   "stage (a cell by its mass, uniform within it); measurements computed on every draw")


def method_dict(n: int = DEFAULT_SAMPLES, seed: int = DEFAULT_SEED, combined: bool = False) -> dict:
    return {
        "samples": n, "seed": seed, "interval_percentiles": list(INTERVAL_PERCENTILES),
        "uncertain_rule": f"most probable class has probability < {UNCERTAIN_BELOW}",
        "method": COMBINED_METHOD if combined else "landmark positions drawn independently from each calibrated "
                  "heatmap (uniform within the drawn model pixel); measurements computed on every draw",
        "definitions": "ISBI 2015 challenge (Wang et al., Med Image Anal 2016) plus textbook extras",
    }


def _rounded(d: dict) -> dict:
    r = 4 if d["unit"] == "ratio" else 2
    out = dict(d)
    for k in ("value", "median", "p05", "p95"):
        out[k] = round(d[k], r)
    if "classes" in d:
        out["classes"] = [dict(c, probability=round(c["probability"], 4)) for c in d["classes"]]
        out["class_probability"] = round(d["class_probability"], 4)
    return out


def measurements_json(results: list, n: int = DEFAULT_SAMPLES, seed: int = DEFAULT_SEED,
                      combined: bool = False) -> dict:
    """The "measurements" section of the detect JSON (combined: drawn from the second stage's maps)."""
    return {"method": method_dict(n, seed, combined), "items": [_rounded(r) for r in results]}


CORRECTED_RULE = ("landmarks corrected by the clinician are taken as exact: every draw puts them at their "
                  "corrected position; each item's \"corrected\" lists the corrected landmarks it uses")


def results_json(results: list, n: int = DEFAULT_SAMPLES, seed: int = DEFAULT_SEED, corrected_landmarks=None,
                 combined: bool = False) -> dict:
    """The "measurements" section for reports `results`: items, the skipped measurements (a landmark
    they use is missing) and, when corrected_landmarks is given (abbreviations), the correction rule."""
    out = measurements_json(results, n, seed, combined)
    done = {item["key"] for item in out["items"]}
    skipped = [m.key for m in MEASUREMENTS if m.key not in done]
    if skipped:
        out["skipped_missing_landmarks"] = skipped
    if corrected_landmarks is not None:
        out["method"]["corrected"] = CORRECTED_RULE
        out["corrected_landmarks"] = list(corrected_landmarks)
    return out


def _combined(detection) -> bool:
    return getattr(detection, "combined", None) is not None


def detection_measurements_json(detection, n: int = DEFAULT_SAMPLES, seed: int = DEFAULT_SEED) -> dict:
    return results_json(measure_detection(detection, n, seed), n, seed, combined=_combined(detection))


def corrected_measurements_json(detection, points_mm, corrected=(), n: int = DEFAULT_SAMPLES,
                                seed: int = DEFAULT_SEED) -> dict:
    """The "measurements" section at the current points, corrected landmarks (0-based) held fixed."""
    results = measure_corrected(detection, points_mm, corrected, n, seed)
    names = [detection.landmarks[i].abbreviation for i in sorted({int(i) for i in corrected})]
    return results_json(results, n, seed, names, combined=_combined(detection))
