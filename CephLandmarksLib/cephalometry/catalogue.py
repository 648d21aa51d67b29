"""The catalogue of named cephalometric analyses (analyses.json), loaded and validated.

The analyses, their measurements' definitions and their norms are data, shipped beside this
module and checked on load. A clinic's own norms file (same schema, "analyses" holding only
keys and "norms") overrides norms by analysis and measurement key, through the same checks.
Any problem is one CephError line naming the file, the entry and what is wrong.
"""

import json
from dataclasses import dataclass, replace
from pathlib import Path

from ..errors import CephError
from . import definitions

CATALOGUE_PATH = Path(__file__).with_name("analyses.json")
SCHEMA = 1
UNITS = ("deg", "mm", "%", "ratio")
SEXES = ("male", "female")
HORIZONTAL_OPTIONS = ("FH", "constructed")
NORM_FIELDS = {"mean", "sd", "sd_from", "convention", "low", "high", "population", "age", "sex", "age_range",
               "source", "note", "sample_range", "age_correction"}
MEASUREMENT_FIELDS = {"key", "name", "unit", "text", "definition", "norms", "norm_missing", "below", "above",
                      "surrogates"}
ANALYSIS_FIELDS = {"key", "name", "description", "horizontal_options", "measurements", "left_out", "norm_label"}


class Invalid(Exception):
    """A problem at one place of a catalogue or norms file: (where, what)."""


@dataclass(frozen=True)
class AgeCorrection:
    """A norm's yearly change between two ages (Ricketts): the mean moves, the SD stays."""

    per_year: float
    from_age: float
    until_age: float

    def mean_at(self, mean: float, age_years: float) -> float:
        years = min(max(age_years, self.from_age), self.until_age) - self.from_age
        return mean + self.per_year * years


@dataclass(frozen=True)
class Norm:
    """A published norm: mean +- sd, or a range low-high, or a mean alone; with who it describes and its source."""

    source: str  # the citation
    population: str
    mean: float | None = None
    sd: float | None = None
    sd_from: str | None = None  # "source" or "convention"
    convention: str | None = None
    low: float | None = None
    high: float | None = None
    age: str | None = None
    sex: str | None = None  # "male", "female" or None (both)
    age_range: tuple | None = None  # years this norm applies to, for choosing by the patient's age
    note: str | None = None
    sample_range: tuple | None = None  # the source sample's min-max (informative, not graded)
    age_correction: AgeCorrection | None = None


@dataclass(frozen=True)
class MeasurementSpec:
    key: str
    name: str
    unit: str
    text: str  # the definition in words
    definition: dict  # in the vocabulary of definitions.py
    norms: tuple  # of Norm; empty when none could be confirmed
    norm_missing: str | None  # why there is no norm
    below: str
    above: str
    surrogates: tuple = ()


@dataclass(frozen=True)
class AnalysisSpec:
    key: str
    name: str
    description: str
    horizontal_options: tuple
    measurements: tuple
    left_out: tuple = ()  # ({"name", "needs"}, ...)
    norm_label: str | None = None

    def measurement(self, key: str) -> MeasurementSpec:
        return next(m for m in self.measurements if m.key == key)


@dataclass(frozen=True)
class Catalogue:
    analyses: tuple
    sources: dict  # key -> {"citation", "checked_against"}
    notes: tuple
    constructed_horizontal_deg: float
    default_analyses: tuple

    def analysis(self, key_or_name: str) -> AnalysisSpec:
        wanted = key_or_name.strip().lower()
        for a in self.analyses:
            if wanted in (a.key.lower(), a.name.lower()):
                return a
        raise CephError(f"unknown analysis {key_or_name!r} (known: {', '.join(a.key for a in self.analyses)})")

    def select(self, names=None) -> tuple:
        """The analyses named (keys or names; "all"; a comma-separated string), default the default set."""
        if names is None:
            names = self.default_analyses
        if isinstance(names, str):
            if names.strip().lower() == "all":
                return self.analyses
            names = [n for n in names.split(",") if n.strip()]
        return tuple(self.analysis(n) for n in names)


# --- small checks, each raising Invalid(where, what) ---------------------------------------

def _number(value, where, positive=False):
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value != value:
        raise Invalid(where, f"must be a number, got {value!r}")
    if positive and value <= 0:
        raise Invalid(where, f"must be a positive number, got {value!r}")
    return float(value)


def _text(value, where):
    if not isinstance(value, str) or not value.strip():
        raise Invalid(where, f"must be a non-empty text, got {value!r}")
    return value


def _fields(entry, allowed, where):
    if not isinstance(entry, dict):
        raise Invalid(where, f"must be an object, got {type(entry).__name__}")
    extra = sorted(set(entry) - allowed)
    if extra:
        raise Invalid(where, f"unknown field(s) {', '.join(extra)}")


def _pair(value, where):
    if not (isinstance(value, list) and len(value) == 2):
        raise Invalid(where, f"must be [low, high], got {value!r}")
    low, high = (_number(v, where) for v in value)
    if low > high:
        raise Invalid(where, f"low {low:g} is above high {high:g}")
    return (low, high)


def _optional(entry, name, check, where):
    value = entry.get(name)
    return None if value is None else check(value, f"{where}.{name}")


def _age_correction(value, where):
    _fields(value, {"per_year", "from_age", "until_age"}, where)
    per_year, start, end = (_number(value.get(k), f"{where}.{k}") for k in ("per_year", "from_age", "until_age"))
    if start > end:
        raise Invalid(where, f"from_age {start:g} is after until_age {end:g}")
    return AgeCorrection(per_year, start, end)


def _sd_from(entry, sd, where):
    if sd is None:
        if entry.get("sd_from") is not None:
            raise Invalid(where, "sd_from given without an sd")
        return None, None
    sd_from = entry.get("sd_from")
    if sd_from not in ("source", "convention"):
        raise Invalid(f"{where}.sd_from", f"must be 'source' or 'convention' when an sd is given, got {sd_from!r}")
    if sd_from == "convention":
        return sd_from, _text(entry.get("convention"), f"{where}.convention")
    return sd_from, None


def _band(entry, where):
    """(mean, sd, low, high) of a norm entry, checked for consistency."""
    mean = _optional(entry, "mean", _number, where)
    sd = _optional(entry, "sd", lambda v, w: _number(v, w, positive=True), where)
    if (entry.get("low") is None) != (entry.get("high") is None):
        raise Invalid(where, "a range needs both low and high")
    low, high = (None, None) if entry.get("low") is None else _pair([entry["low"], entry["high"]], f"{where}.low-high")
    if mean is None and low is None:
        raise Invalid(where, "a norm needs a mean or a range (low, high)")
    if sd is not None and mean is None:
        raise Invalid(where, "an sd needs a mean")
    if low is not None and low == high:
        raise Invalid(where, f"the range {low:g}-{high:g} is empty")
    if mean is not None and low is not None and not low <= mean <= high:
        raise Invalid(where, f"the mean {mean:g} lies outside the range {low:g}-{high:g}")
    return mean, sd, low, high


def _norm(entry, sources, where) -> Norm:
    _fields(entry, NORM_FIELDS, where)
    mean, sd, low, high = _band(entry, where)
    sd_from, convention = _sd_from(entry, sd, where)
    source = _text(entry.get("source"), f"{where}.source")
    if source not in sources:
        raise Invalid(f"{where}.source", f"unknown source {source!r} (cite it under 'sources')")
    sex = entry.get("sex")
    if sex is not None and sex not in SEXES:
        raise Invalid(f"{where}.sex", f"must be one of {', '.join(SEXES)} or absent, got {sex!r}")
    correction = _optional(entry, "age_correction", _age_correction, where)
    if correction is not None and mean is None:
        raise Invalid(where, "an age correction needs a mean")
    return Norm(
        source=sources[source]["citation"], population=_text(entry.get("population"), f"{where}.population"),
        mean=mean, sd=sd, sd_from=sd_from, convention=convention, low=low, high=high,
        age=_optional(entry, "age", _text, where), sex=sex, age_range=_optional(entry, "age_range", _pair, where),
        note=_optional(entry, "note", _text, where), sample_range=_optional(entry, "sample_range", _pair, where),
        age_correction=correction,
    )


def _norms(value, sources, where) -> tuple:
    if not isinstance(value, list):
        raise Invalid(where, "must be a list of norms")
    return tuple(_norm(n, sources, f"{where}[{i}]") for i, n in enumerate(value))


def _keyed(entries, where):
    """Yield (entry, its where) for a list of objects with unique "key"s."""
    if not isinstance(entries, list) or not entries:
        raise Invalid(where, "must be a non-empty list")
    seen = set()
    for i, entry in enumerate(entries):
        key = entry.get("key") if isinstance(entry, dict) else None
        here = f"{where}[{key if isinstance(key, str) else i}]"
        _text(key, f"{here}.key")
        if key in seen:
            raise Invalid(here, f"duplicate key {key!r}")
        seen.add(key)
        yield entry, here


def _measurement(entry, sources, where) -> MeasurementSpec:
    _fields(entry, MEASUREMENT_FIELDS, where)
    if entry.get("unit") not in UNITS:
        raise Invalid(f"{where}.unit", f"must be one of {', '.join(UNITS)}, got {entry.get('unit')!r}")
    problem = definitions.check(entry.get("definition"), f"{where}.definition")
    if problem:
        raise Invalid(*problem.split(": ", 1))
    norms = _norms(entry.get("norms"), sources, f"{where}.norms")
    missing = entry.get("norm_missing")
    if not norms:
        _text(missing, f"{where}.norm_missing")
    surrogates = entry.get("surrogates", [])
    if not isinstance(surrogates, list):
        raise Invalid(f"{where}.surrogates", "must be a list of texts")
    return MeasurementSpec(
        key=entry["key"], name=_text(entry.get("name"), f"{where}.name"), unit=entry["unit"],
        text=_text(entry.get("text"), f"{where}.text"), definition=entry["definition"], norms=norms,
        norm_missing=missing, below=_text(entry.get("below"), f"{where}.below"),
        above=_text(entry.get("above"), f"{where}.above"),
        surrogates=tuple(_text(s, f"{where}.surrogates[{i}]") for i, s in enumerate(surrogates)),
    )


def _analysis(entry, sources, where) -> AnalysisSpec:
    _fields(entry, ANALYSIS_FIELDS, where)
    options = entry.get("horizontal_options")
    if not isinstance(options, list) or any(o not in HORIZONTAL_OPTIONS for o in options):
        raise Invalid(f"{where}.horizontal_options", f"must be a list of {', '.join(HORIZONTAL_OPTIONS)}")
    listed = _keyed(entry.get("measurements"), f"{where}.measurements")
    measurements = tuple(_measurement(m, sources, w) for m, w in listed)
    if not options and any(definitions.uses_horizontal(m.definition) for m in measurements):
        raise Invalid(f"{where}.horizontal_options", "a measurement uses the horizontal: list the options offered")
    left_out = entry.get("left_out", [])
    for i, item in enumerate(left_out):
        _fields(item, {"name", "needs"}, f"{where}.left_out[{i}]")
        _text(item.get("name"), f"{where}.left_out[{i}].name")
        _text(item.get("needs"), f"{where}.left_out[{i}].needs")
    return AnalysisSpec(
        key=entry["key"], name=_text(entry.get("name"), f"{where}.name"),
        description=_text(entry.get("description"), f"{where}.description"), horizontal_options=tuple(options),
        measurements=measurements, left_out=tuple(left_out), norm_label=_optional(entry, "norm_label", _text, where),
    )


def _sources(value, where) -> dict:
    if not isinstance(value, dict):
        raise Invalid(where, "must be an object of source key -> {citation, checked_against}")
    for key, source in value.items():
        _fields(source, {"citation", "checked_against"}, f"{where}.{key}")
        _text(source.get("citation"), f"{where}.{key}.citation")
    return value


def _schema(data):
    if not isinstance(data, dict):
        raise Invalid("file", "must be a JSON object")
    if data.get("schema") != SCHEMA:
        raise Invalid("schema", f"must be {SCHEMA}, got {data.get('schema')!r}")


def _catalogue(data) -> Catalogue:
    _schema(data)
    _fields(data, {"schema", "notes", "conventions", "default_analyses", "sources", "analyses"}, "file")
    sources = _sources(data.get("sources"), "sources")
    analyses = tuple(_analysis(a, sources, w) for a, w in _keyed(data.get("analyses"), "analyses"))
    keys = {a.key for a in analyses}
    defaults = data.get("default_analyses", [])
    unknown = [k for k in defaults if k not in keys]
    if unknown:
        raise Invalid("default_analyses", f"unknown analyses {unknown}")
    conventions = data.get("conventions", {})
    tilt = _number(conventions.get("constructed_horizontal_deg"), "conventions.constructed_horizontal_deg")
    return Catalogue(analyses, sources, tuple(data.get("notes", [])), tilt, tuple(defaults))


def _read(path: Path):
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as e:
        raise CephError(f"{path}: cannot read: {e.strerror or e}") from None
    except json.JSONDecodeError as e:
        raise CephError(f"{path}: not valid JSON: {e.msg} at line {e.lineno} column {e.colno}") from None


def load_catalogue(path=None) -> Catalogue:
    """The shipped catalogue (or the one at `path`), validated."""
    path = Path(path) if path else CATALOGUE_PATH
    try:
        return _catalogue(_read(path))
    except Invalid as e:
        raise CephError(f"{path}: {e.args[0]}: {e.args[1]}") from None


def _override(catalogue: Catalogue, data) -> Catalogue:
    _schema(data)
    _fields(data, {"schema", "notes", "sources", "analyses"}, "file")
    sources = {**catalogue.sources, **_sources(data.get("sources", {}), "sources")}
    analyses = {a.key: a for a in catalogue.analyses}
    for entry, where in _keyed(data.get("analyses"), "analyses"):
        _fields(entry, {"key", "measurements"}, where)
        if entry["key"] not in analyses:
            raise Invalid(f"{where}.key", f"unknown analysis (known: {', '.join(analyses)})")
        analysis = analyses[entry["key"]]
        specs = {m.key: m for m in analysis.measurements}
        for m, here in _keyed(entry.get("measurements"), f"{where}.measurements"):
            _fields(m, {"key", "norms"}, here)
            if m["key"] not in specs:
                raise Invalid(f"{here}.key", f"unknown measurement of {analysis.key} (known: {', '.join(specs)})")
            norms = _norms(m.get("norms"), sources, f"{here}.norms")
            if not norms:
                raise Invalid(f"{here}.norms", "must hold at least one norm")
            specs[m["key"]] = replace(specs[m["key"]], norms=norms, norm_missing=None)
        analyses[analysis.key] = replace(analysis, measurements=tuple(specs.values()))
    return replace(catalogue, analyses=tuple(analyses.values()), sources=sources)


def with_norms_file(catalogue: Catalogue, path) -> Catalogue:
    """The catalogue with a clinic's norms (a JSON file in the catalogue's schema) in place of the shipped ones."""
    try:
        return _override(catalogue, _read(Path(path)))
    except Invalid as e:
        raise CephError(f"{path}: {e.args[0]}: {e.args[1]}") from None


def select_norm(spec: MeasurementSpec, age_years=None, sex=None) -> tuple:
    """(the norm for this patient or None, a note on the choice or None).

    A norm for one sex applies only when the patient's sex is that sex; a norm with an age
    range only when the age is given and inside it. The first that applies wins.
    """
    for norm in spec.norms:
        if norm.sex is not None and norm.sex != sex:
            continue
        ages = norm.age_range
        if ages is not None and (age_years is None or not ages[0] <= age_years <= ages[1]):
            continue
        return norm, None
    if not spec.norms:
        return None, spec.norm_missing
    if any(n.sex for n in spec.norms) and sex is None:
        only = ", ".join(sorted({n.sex for n in spec.norms if n.sex}))
        return None, f"the norm is for {only} subjects and the patient's sex is not given"
    return None, "no norm for this patient's age and sex"
