"""The named analyses for one patient: every measurement with its interval, norm and P(outside the norm).

`run_analyses` takes the landmarks (19, 2) in mm on image axes, and optionally S sampled
configurations (S, 19, 2) such as measurement_uncertainty.sample_landmarks_mm draws from the
heatmaps. Each measurement gets its value at the points, the 5th-95th percentile of the
samples (a 90 % interval), its norm (age-corrected where the source says so), the deviation
in SD, the interpretation word, P(outside the norm), its surrogates, the landmarks it rests
on (and which of them are flagged) and the reference horizontal it used. A measurement that
is undefined (a missing landmark, two coincident points on one of its lines) says why, with
value None. The output is plain data in the shape of the detect JSON's "analyses" section.
"""

from functools import cache

import numpy as np

from ..errors import CephError
from . import grading
from .anatomy import INDEX, anatomical_frame, horizontal
from .catalogue import HORIZONTAL_OPTIONS, Catalogue, load_catalogue, select_norm
from .definitions import Context, evaluate, points_of, uses_horizontal
from .measurement_uncertainty import landmarks_used
from .measurements import BY_KEY as ISBI_BY_KEY

INTERVAL_PERCENTILES = (5.0, 95.0)
NAMES = {i: abbr for abbr, i in INDEX.items()}


@cache
def shipped_catalogue() -> Catalogue:
    return load_catalogue()


def horizontal_choice(analysis, horizontal_option) -> str | None:
    """The horizontal an analysis uses: the option given (one for all, or {analysis key: option}), else FH."""
    if not analysis.horizontal_options:
        if isinstance(horizontal_option, dict) and analysis.key in horizontal_option:
            raise CephError(f"analysis {analysis.key} uses no horizontal: it takes no horizontal option")
        return None
    choice = horizontal_option.get(analysis.key, "FH") if isinstance(horizontal_option, dict) else horizontal_option
    choice = choice or "FH"
    if choice not in analysis.horizontal_options:
        options = ", ".join(analysis.horizontal_options)
        raise CephError(f"horizontal {choice!r} for {analysis.key}: choose one of {options}")
    return choice


def rests_on(spec, horizontal_name) -> tuple:
    """The landmarks a measurement's value depends on, the horizontal's included when it enters the value."""
    if spec.definition["kind"] == "isbi":
        return tuple(NAMES[i] for i in landmarks_used(ISBI_BY_KEY[spec.definition["key"]]))
    points = points_of(spec.definition)
    if horizontal_name and uses_horizontal(spec.definition):
        points += ("Po", "Or") if horizontal_name == "FH" else ("S", "N")
    return tuple(dict.fromkeys(points))


def norm_dict(norm, mean, age_years) -> dict | None:
    if norm is None:
        return None
    out = {
        "mean": mean, "sd": norm.sd, "low": norm.low, "high": norm.high, "band": None,
        "sd_from": norm.sd_from, "convention": norm.convention,
        "population": norm.population, "age": norm.age, "sex": norm.sex, "source": norm.source, "note": norm.note,
    }
    limits = grading.band(norm, mean)
    out["band"] = list(limits) if limits else None
    if norm.sample_range:
        out["sample_range"] = list(norm.sample_range)
    if norm.age_correction is not None:
        out["age_corrected_to"] = age_years  # None: the uncorrected norm at its base age
    return out


class _Contexts:
    """The point and sample configurations in their anatomical frames, with each horizontal built once."""

    def __init__(self, points_mm, samples_mm, constructed_deg):
        self.image = {"point": points_mm[None], "samples": samples_mm}
        self.frames = {k: anatomical_frame(v) for k, v in self.image.items() if v is not None}
        self.constructed_deg = constructed_deg
        self._cache = {}

    def get(self, which: str, horizontal_name: str | None) -> Context:
        key = (which, horizontal_name or "FH")
        if key not in self._cache:
            frame = self.frames[which]
            self._cache[key] = Context(frame, horizontal(frame, key[1], self.constructed_deg), self.image[which])
        return self._cache[key]


def _value(spec, ctx) -> tuple:
    """(value or None, reason or None) at the detected points."""
    ev = evaluate(spec.definition, ctx)
    if ev.valid[0] and np.isfinite(ev.values[0]):
        return float(ev.values[0]), None
    return None, ev.reason or "undefined"


def _samples(spec, ctx) -> np.ndarray:
    """The measurement's values on the samples where it is defined."""
    ev = evaluate(spec.definition, ctx)
    ok = ev.valid & np.isfinite(ev.values)
    return ev.values[ok]


def _isbi_class(spec, value) -> str | None:
    if spec.definition["kind"] != "isbi" or value is None:
        return None
    m = ISBI_BY_KEY[spec.definition["key"]]
    return m.classes[int(m.class_index(np.array([value]))[0])][1]


def _measured(spec, contexts: _Contexts, horizontal_name, points) -> tuple:
    """(value or None, why it is undefined or None, the defined sample values or None)."""
    point_mm = contexts.image["point"][0]
    missing = [p for p in points if not np.all(np.isfinite(point_mm[INDEX[p]]))]
    if missing:
        return None, f"missing landmark(s): {', '.join(missing)}", None
    value, undefined = _value(spec, contexts.get("point", horizontal_name))
    if contexts.image["samples"] is None or value is None:
        return value, undefined, None
    return value, undefined, _samples(spec, contexts.get("samples", horizontal_name))


def _graded(spec, value, samples, age_years, sex) -> dict:
    """The norm-related fields: norm, why there is none, deviation in SD, interpretation, P(outside)."""
    norm, norm_note = select_norm(spec, age_years, sex)
    mean = grading.corrected_mean(norm, age_years)
    limits = grading.band(norm, mean)
    return {
        "norm": norm_dict(norm, mean, age_years), "norm_missing": None if norm else norm_note,
        "deviation_sd": grading.deviation_sd(value, mean, norm.sd if norm else None),
        "interpretation": grading.interpretation(value, limits, spec.below, spec.above),
        "p_outside_norm": grading.p_outside(samples, limits),
    }


def measure(spec, contexts: _Contexts, horizontal_name, *, age_years=None, sex=None, flagged=()) -> dict:
    """One measurement's entry (see the module docstring)."""
    points = rests_on(spec, horizontal_name)
    value, undefined, samples = _measured(spec, contexts, horizontal_name, points)
    interval = None
    if samples is not None and len(samples):
        interval = [float(v) for v in np.percentile(samples, INTERVAL_PERCENTILES)]
    reference = None
    if horizontal_name and uses_horizontal(spec.definition):
        reference = contexts.get("point", horizontal_name).horizontal.label
    item = {
        "key": spec.key, "name": spec.name, "unit": spec.unit, "definition": spec.text,
        "value": value, "undefined": undefined,
        "interval_90": interval, "median": float(np.median(samples)) if interval else None,
        "samples_used": None if samples is None else int(len(samples)),
        **_graded(spec, value, samples, age_years, sex),
        "surrogates": list(spec.surrogates),
        "rests_on": list(points),
        "flagged_points": [p for p in points if p in set(flagged)],
        "reference": reference,
    }
    challenge_class = _isbi_class(spec, value)
    if challenge_class is not None:
        item["challenge_class"] = challenge_class
    return item


def run_analyses(points_mm, samples_mm=None, analyses=None, *, catalogue: Catalogue | None = None,
                 horizontal_option="FH", age_years=None, sex=None, flagged=()) -> list:
    """The chosen analyses (keys or names, "all", default the catalogue's default set) for one patient.

    points_mm: (19, 2) landmarks in mm on image axes (NaN for a missing one); samples_mm:
    (S, 19, 2) sampled configurations for the intervals and P(outside), or None.
    horizontal_option: "FH" or "constructed" for every analysis that offers a choice, or
    {analysis key: option}. age_years, sex ("male"/"female"): pick and correct norms where
    the source has age- or sex-specific ones. flagged: abbreviations of flagged landmarks.
    """
    catalogue = catalogue or shipped_catalogue()
    if isinstance(horizontal_option, str) and horizontal_option not in HORIZONTAL_OPTIONS:
        raise CephError(f"unknown horizontal {horizontal_option!r}: choose one of {', '.join(HORIZONTAL_OPTIONS)}")
    if isinstance(horizontal_option, dict):
        unknown = sorted(set(horizontal_option) - {a.key for a in catalogue.analyses})
        if unknown:
            raise CephError(f"horizontal option for unknown analyses: {', '.join(unknown)}")
    if sex is not None and sex not in ("male", "female"):
        raise CephError(f"unknown sex {sex!r}: give male or female")
    points = np.asarray(points_mm, dtype=np.float64)
    samples = None if samples_mm is None else np.asarray(samples_mm, dtype=np.float64)
    contexts = _Contexts(points, samples, catalogue.constructed_horizontal_deg)
    out = []
    for analysis in catalogue.select(analyses):
        choice = horizontal_choice(analysis, horizontal_option)
        out.append({
            "key": analysis.key, "name": analysis.name, "description": analysis.description,
            "norm_label": analysis.norm_label,
            "horizontal": None if choice is None else contexts.get("point", choice).horizontal.label,
            "measurements": [measure(m, contexts, choice, age_years=age_years, sex=sex, flagged=flagged)
                             for m in analysis.measurements],
            "left_out": [dict(item) for item in analysis.left_out],
        })
    return out


def _round(value, digits):
    if isinstance(value, float):
        return round(value, digits)
    if isinstance(value, list):
        return [_round(v, digits) for v in value]
    return value


def rounded(results: list) -> list:
    """The results with numbers rounded for the JSON: 4 decimals for ratios, 2 otherwise, P to 3."""
    out = []
    for analysis in results:
        items = []
        for item in analysis["measurements"]:
            digits = 4 if item["unit"] == "ratio" else 2
            item = {k: _round(v, 3 if k == "p_outside_norm" else digits) for k, v in item.items()}
            if item["norm"]:
                item["norm"] = {k: _round(v, digits) for k, v in item["norm"].items()}
            items.append(item)
        out.append({**analysis, "measurements": items})
    return out
