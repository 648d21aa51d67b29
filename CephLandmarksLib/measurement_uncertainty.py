"""Uncertainty of the measurements, carried from the calibrated heatmaps by sampling.

Each landmark's calibrated heatmap is read as the distribution of its position.
Positions are drawn independently per landmark (inverse CDF on the flattened map,
then uniform jitter inside the drawn model pixel), mapped to image pixels with the
detection's ModelFrame and to mm with its spacing; every measurement is computed
on every draw.  A measurement is reported as its value at the detected points, the
median and the 5th-95th percentile interval of the draws (a 90 % interval), and the
share of draws in each class.  Independence ignores correlations between
landmarks; benchmarks/measurement_coverage.py checks whether the intervals hold.
"""

import numpy as np

from .geometry import px_to_mm
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
    """(n, L, 2) landmark configurations in mm (image axes) drawn from the detection's heatmaps."""
    rng = np.random.default_rng(seed)
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
            "classes": [{"code": c, "label": lab, "probability": float(pr)} for (c, lab), pr in zip(m.classes, probs)],
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


def method_dict(n: int = DEFAULT_SAMPLES, seed: int = DEFAULT_SEED) -> dict:
    return {
        "samples": n, "seed": seed, "interval_percentiles": list(INTERVAL_PERCENTILES),
        "uncertain_rule": f"most probable class has probability < {UNCERTAIN_BELOW}",
        "method": "landmark positions drawn independently from each calibrated heatmap "
                  "(uniform within the drawn model pixel); measurements computed on every draw",
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


def measurements_json(results: list, n: int = DEFAULT_SAMPLES, seed: int = DEFAULT_SEED) -> dict:
    """The "measurements" section of the detect JSON."""
    return {"method": method_dict(n, seed), "items": [_rounded(r) for r in results]}


def detection_measurements_json(detection, n: int = DEFAULT_SAMPLES, seed: int = DEFAULT_SEED) -> dict:
    out = measurements_json(measure_detection(detection, n, seed), n, seed)
    done = {item["key"] for item in out["items"]}
    skipped = [m.key for m in MEASUREMENTS if m.key not in done]
    if skipped:
        out["skipped_missing_landmarks"] = skipped
    return out
