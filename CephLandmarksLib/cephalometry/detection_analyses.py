"""The named analyses of one detection: the detect JSON's "analyses" section, before and after corrections.

`AnalysisOptions` holds what the user chose (which analyses, a clinic's norms file, the
horizontal, the patient's age and sex) and is checked before any detection runs, so a bad
name or file costs one line and no work. `analyses_for_detection` measures the detection's
points with the samples `measurement_uncertainty` draws from its heatmaps (same seed, same
stream), so the analyses' intervals agree with the flat "measurements". After review, a
landmark the clinician corrected (or confirmed) is held exact in every draw and no longer
counts as flagged: a row resting on it loses its flag note, as the issue asks.
"""

from dataclasses import dataclass, replace
from functools import cached_property

import numpy as np

from ..errors import CephError
from ..imaging.geometry import px_to_mm
from ..imaging.patient_tags import dicom_patient
from .analyses import rounded, run_analyses, shipped_catalogue
from .catalogue import HORIZONTAL_OPTIONS, with_norms_file
from .measurement_uncertainty import DEFAULT_SAMPLES, DEFAULT_SEED, sample_landmarks_mm

AGE_RANGE_YEARS = (3.0, 100.0)  # a cephalogram's patient; outside it the age is a typo
POINT_NAMES = {"Po": "porion", "Or": "orbitale", "Ar": "articulare", "Go": "gonion", "S": "sella", "N": "nasion"}


@dataclass(frozen=True)
class AnalysisOptions:
    """What to analyse and against which norms. analyses: keys/names, "all" or None (the default set)."""

    analyses: object = None
    norms_path: str | None = None
    horizontal: object = "FH"  # "FH", "constructed" or {analysis key: option}
    age_years: float | None = None
    sex: str | None = None  # "male", "female" or None
    age_source: str | None = None  # "user", "dicom:PatientAge" (for the output's context)
    sex_source: str | None = None

    @cached_property
    def catalogue(self):
        base = shipped_catalogue()
        return with_norms_file(base, self.norms_path) if self.norms_path else base

    def check(self) -> "AnalysisOptions":
        """CephError (one line) for an unknown analysis, a bad norms file, horizontal, age or sex."""
        selected = self.catalogue.select(self.analyses)
        if self.age_years is not None and not AGE_RANGE_YEARS[0] <= self.age_years <= AGE_RANGE_YEARS[1]:
            raise CephError(f"age {self.age_years:g} years: expected {AGE_RANGE_YEARS[0]:g} to "
                            f"{AGE_RANGE_YEARS[1]:g}")
        run_analyses(np.zeros((19, 2)) + np.arange(19)[:, None] * [1.0, 2.0], None,
                     [a.key for a in selected], catalogue=self.catalogue, horizontal_option=self.horizontal,
                     age_years=self.age_years, sex=self.sex)
        return self

    def keys(self) -> list:
        return [a.key for a in self.catalogue.select(self.analyses)]

    def context(self) -> dict:
        """The JSON's "analyses_context": which norms, horizontal and patient details were used."""
        return {
            "analyses": self.keys(), "norms": self.norms_path or "shipped (cephalometry/analyses.json)",
            "horizontal": self.horizontal,
            "age_years": self.age_years, "age_source": self.age_source if self.age_years is not None else None,
            "sex": self.sex, "sex_source": self.sex_source if self.sex else None,
        }


def with_patient(options: AnalysisOptions, image_path) -> AnalysisOptions:
    """The options with the DICOM header's PatientAge/PatientSex where the user gave none."""
    if options.age_years is not None and options.sex is not None:
        return options
    age, sex = dicom_patient(image_path)
    if options.age_years is None and age is not None and AGE_RANGE_YEARS[0] <= age <= AGE_RANGE_YEARS[1]:
        options = replace(options, age_years=age, age_source="dicom:PatientAge")
    if options.sex is None and sex is not None:
        options = replace(options, sex=sex, sex_source="dicom:PatientSex")
    return options


def parse_horizontal(text: str | None):
    """--horizontal: "FH", "constructed", or "downs=constructed,mcnamara=FH" -> str or dict."""
    if text is None or not text.strip():
        return "FH"
    if "=" not in text:
        return text.strip()
    out = {}
    for part in text.split(","):
        key, _, value = part.partition("=")
        if not key.strip() or value.strip() not in HORIZONTAL_OPTIONS:
            raise CephError(f"--horizontal {text!r}: expected FH, constructed or ANALYSIS=FH|constructed,...")
        out[key.strip()] = value.strip()
    return out


def flag_note(item: dict) -> str | None:
    """The words beside a row resting on flagged points (None when it rests on none)."""
    flagged = item.get("flagged_points") or []
    if not flagged:
        return None
    named = ", ".join(f"{p} ({POINT_NAMES[p]})" if p in POINT_NAMES else p for p in flagged)
    note = f"depends on flagged point(s) {named}: the interval reflects an uncertain point, not a finding"
    if "Po" in flagged and (item.get("reference") or "").startswith("Frankfort"):
        note = "Frankfort horizontal rests on flagged porion; " + note
    return note


def with_flag_notes(results: list) -> list:
    for analysis in results:
        for item in analysis["measurements"]:
            item["flag_note"] = flag_note(item)
    return results


def current_samples(detection, points_mm, corrected=(), n: int = DEFAULT_SAMPLES, seed: int = DEFAULT_SEED):
    """(S, L, 2) draws from the heatmaps, the corrected landmarks (0-based) held at points_mm."""
    samples = sample_landmarks_mm(detection, n, seed)
    fixed = sorted({int(i) for i in corrected})
    if fixed:
        samples[:, fixed] = np.asarray(points_mm, dtype=np.float64)[fixed]
    return samples


def analyses_for_detection(detection, options: AnalysisOptions | None = None, points_mm=None, corrected=(),
                           n: int = DEFAULT_SAMPLES, seed: int = DEFAULT_SEED, samples_mm=None) -> list:
    """The "analyses" list at the current points (default the detected ones); corrected landmarks exact.

    A flagged landmark that was corrected (or confirmed) no longer counts as flagged.
    samples_mm: draws already made (current_samples), to share them with another section.
    """
    options = options or AnalysisOptions()
    if points_mm is None:
        points_mm = px_to_mm(detection.points_px, detection.spacing_mm)
    points_mm = np.asarray(points_mm, dtype=np.float64)
    if samples_mm is None:
        samples_mm = current_samples(detection, points_mm, corrected, n, seed)
    fixed = {int(i) for i in corrected}
    flagged = [lm.abbreviation for i, lm in enumerate(detection.landmarks) if lm.flagged and i not in fixed]
    with np.errstate(invalid="ignore"):
        results = run_analyses(points_mm, samples_mm, options.analyses, catalogue=options.catalogue,
                               horizontal_option=options.horizontal, age_years=options.age_years,
                               sex=options.sex, flagged=flagged)
    return with_flag_notes(rounded(results))


def analyses_sections(detection, options: AnalysisOptions | None = None, **kw) -> dict:
    """{"analyses": [...], "analyses_context": {...}}: the detect JSON's sections."""
    options = options or AnalysisOptions()
    context = {**options.context(), "samples": kw.get("n", DEFAULT_SAMPLES), "seed": kw.get("seed", DEFAULT_SEED)}
    if kw.get("corrected"):
        context["corrected_landmarks"] = [detection.landmarks[i].abbreviation for i in sorted(set(kw["corrected"]))]
    return {"analyses": analyses_for_detection(detection, options, **kw), "analyses_context": context}
