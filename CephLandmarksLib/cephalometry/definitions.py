"""The small vocabulary in which analyses.json defines each measurement from the 19 landmarks.

A definition is a JSON object with a "kind" (docs/analyses.md, "Definitions"):

- angle {at, from, to}: the unsigned angle at a vertex, deg;
- angle_between_lines {line1, line2}: the unsigned angle between two directed lines, deg;
- signed_angle {from_line, to_line}: counterclockwise-positive on an upright right-facing profile, deg;
- distance {from, to}: mm;
- distance_to_line {point, line, positive}: signed perpendicular distance, positive on the
  named anatomical side ("anterior", "posterior", "superior", "inferior"), mm;
- projected_offset {point, origin, onto}: (point - origin) along a directed line, mm;
- ratio {numerator, denominator, scale}, sum {terms}, difference {minuend, subtrahend};
- isbi {key}: the ISBI 2015 challenge measurement of cephalometry/measurements.py, as it is.

A line is two landmark abbreviations [P, Q] (directed P->Q) or the analysis' reference
horizontal, "horizontal_anterior" (pointing forward) or "horizontal_posterior".

Evaluation is vectorised over S configurations in their anatomical frame (anatomy.py) and
never divides by zero: a degenerate line (two coincident points) makes that configuration
invalid, with a reason, instead of NaN and a RuntimeWarning.
"""

from dataclasses import dataclass

import numpy as np

from .anatomy import EPS_MM, INDEX, Frame, Horizontal, unit_vectors
from .measurements import BY_KEY as ISBI_BY_KEY

HORIZONTAL_LINES = ("horizontal_anterior", "horizontal_posterior")
SIDES = {"anterior": (0, 1.0), "posterior": (0, -1.0), "superior": (1, 1.0), "inferior": (1, -1.0)}
FIELDS = {
    "angle": {"at": "point", "from": "point", "to": "point"},
    "angle_between_lines": {"line1": "line", "line2": "line"},
    "signed_angle": {"from_line": "line", "to_line": "line"},
    "distance": {"from": "point", "to": "point"},
    "distance_to_line": {"point": "point", "line": "pair", "positive": "side"},
    "projected_offset": {"point": "point", "origin": "point", "onto": "line"},
    "ratio": {"numerator": "definition", "denominator": "definition", "scale": "number?"},
    "sum": {"terms": "definitions"},
    "difference": {"minuend": "definition", "subtrahend": "definition"},
    "isbi": {"key": "isbi"},
}


@dataclass(frozen=True)
class Context:
    """What a definition is evaluated on: the frame, the analysis' horizontal, the image-axis points."""

    frame: Frame
    horizontal: Horizontal
    image_mm: np.ndarray  # (S, 19, 2), for the ISBI measurements (their own conventions)


@dataclass(frozen=True)
class Evaluated:
    """Values (S,) where valid (S,); elsewhere undefined, for `reason`."""

    values: np.ndarray
    valid: np.ndarray
    reason: str = ""


# --- checking --------------------------------------------------------------------------

def _check_field(kind: str, value, where: str) -> str | None:
    if kind == "point":
        return None if value in INDEX else f"{where}: unknown landmark {value!r}"
    if kind == "pair":
        if not (isinstance(value, list) and len(value) == 2 and all(v in INDEX for v in value)):
            return f"{where}: a line must be two landmark abbreviations, got {value!r}"
        return None
    if kind == "line":
        return None if value in HORIZONTAL_LINES else _check_field("pair", value, where)
    if kind == "side":
        return None if value in SIDES else f"{where}: 'positive' must be one of {sorted(SIDES)}, got {value!r}"
    if kind == "number?":
        ok = value is None or (isinstance(value, (int, float)) and not isinstance(value, bool))
        return None if ok else f"{where}: must be a number, got {value!r}"
    if kind == "isbi":
        return None if value in ISBI_BY_KEY else f"{where}: unknown ISBI measurement {value!r}"
    if kind == "definitions":
        if not (isinstance(value, list) and value):
            return f"{where}: must be a non-empty list of definitions"
        return next((e for i, t in enumerate(value) if (e := check(t, f"{where}[{i}]"))), None)
    return check(value, where)


def check(definition, where: str = "definition") -> str | None:
    """The first problem with a definition, as one line naming where it is; None when it is valid."""
    if not isinstance(definition, dict) or definition.get("kind") not in FIELDS:
        kind = definition.get("kind") if isinstance(definition, dict) else definition
        return f"{where}: unknown kind {kind!r} (known: {', '.join(FIELDS)})"
    fields = FIELDS[definition["kind"]]
    extra = sorted(set(definition) - set(fields) - {"kind"})
    if extra:
        return f"{where}: unknown field(s) {', '.join(extra)} for kind {definition['kind']!r}"
    for name, kind in fields.items():
        if name not in definition and not kind.endswith("?"):
            return f"{where}: {definition['kind']} needs {name!r}"
        problem = _check_field(kind, definition.get(name), f"{where}.{name}")
        if problem:
            return problem
    return None


# --- what a definition rests on ----------------------------------------------------------

def _walk(definition):
    yield definition
    for name, kind in FIELDS[definition["kind"]].items():
        if kind == "definition":
            yield from _walk(definition[name])
        elif kind == "definitions":
            for term in definition[name]:
                yield from _walk(term)


def points_of(definition) -> tuple:
    """The landmark abbreviations a definition names, in order (not the horizontal's, not an ISBI formula's)."""
    out = []
    for d in _walk(definition):
        for name, kind in FIELDS[d["kind"]].items():
            value = d.get(name)
            if kind == "point":
                out.append(value)
            elif kind in ("pair", "line") and isinstance(value, list):
                out.extend(value)
    return tuple(dict.fromkeys(out))


def uses_horizontal(definition) -> bool:
    """Whether the reference horizontal enters the value (then the output names which one was used)."""
    return any(
        d.get(name) in HORIZONTAL_LINES
        for d in _walk(definition) for name, kind in FIELDS[d["kind"]].items() if kind == "line"
    )


# --- evaluation --------------------------------------------------------------------------

def _both(a: Evaluated, b: Evaluated, values: np.ndarray) -> Evaluated:
    reason = a.reason if not a.valid.all() else b.reason
    return Evaluated(values, a.valid & b.valid, reason)


def _point(ctx: Context, name: str) -> np.ndarray:
    return ctx.frame.local[:, INDEX[name]]


def _line(ctx: Context, line) -> Evaluated:
    """Direction vectors (S, 2) of a line: unit for the horizontal, P->Q otherwise."""
    if isinstance(line, str):
        h = ctx.horizontal
        sign = 1.0 if line == "horizontal_anterior" else -1.0
        return Evaluated(h.direction * sign, h.valid, h.reason)
    p, q = line
    d = _point(ctx, q) - _point(ctx, p)
    return Evaluated(d, unit_vectors(d)[1], f"{p} and {q} coincide: the line {p}-{q} is undefined")


def _framed(ctx: Context, e: Evaluated) -> Evaluated:
    """e, undefined where the anatomical frame is (its sign needs anterior)."""
    return _both(Evaluated(e.values, ctx.frame.valid, ctx.frame.reason), e, e.values)


def _cross(u, v):
    return u[:, 0] * v[:, 1] - u[:, 1] * v[:, 0]


def _angle_deg(u: Evaluated, v: Evaluated, signed: bool) -> Evaluated:
    cross, dot = _cross(u.values, v.values), (u.values * v.values).sum(-1)
    angle = np.degrees(np.arctan2(cross if signed else np.abs(cross), dot))
    return _both(u, v, angle)


def _angle(d, ctx):
    return _angle_deg(_line(ctx, [d["at"], d["from"]]), _line(ctx, [d["at"], d["to"]]), signed=False)


def _angle_between_lines(d, ctx):
    return _angle_deg(_line(ctx, d["line1"]), _line(ctx, d["line2"]), signed=False)


def _signed_angle(d, ctx):
    return _framed(ctx, _angle_deg(_line(ctx, d["from_line"]), _line(ctx, d["to_line"]), signed=True))


def _distance(d, ctx):
    values = np.linalg.norm(_point(ctx, d["to"]) - _point(ctx, d["from"]), axis=-1)
    return Evaluated(values, np.ones(len(values), dtype=bool))


def _distance_to_line(d, ctx):
    line = _line(ctx, d["line"])
    u, _ = unit_vectors(line.values)
    normal = np.stack([-u[:, 1], u[:, 0]], axis=-1)
    axis, sign = SIDES[d["positive"]]
    normal = normal * np.where(normal[:, axis] < 0, -1.0, 1.0)[:, None] * sign
    values = ((_point(ctx, d["point"]) - _point(ctx, d["line"][0])) * normal).sum(-1)
    return _framed(ctx, Evaluated(values, line.valid, line.reason))


def _projected_offset(d, ctx):
    line = _line(ctx, d["onto"])
    u, _ = unit_vectors(line.values)
    values = ((_point(ctx, d["point"]) - _point(ctx, d["origin"])) * u).sum(-1)
    return Evaluated(values, line.valid, line.reason)


def _ratio(d, ctx):
    num, den = evaluate(d["numerator"], ctx), evaluate(d["denominator"], ctx)
    nonzero = np.abs(den.values) > EPS_MM
    scale = d.get("scale") or 1.0
    values = scale * num.values / np.where(nonzero, den.values, 1.0)
    out = _both(num, den, values)
    return _both(out, Evaluated(values, nonzero, "the denominator is zero"), values)


def _sum(d, ctx):
    terms = [evaluate(t, ctx) for t in d["terms"]]
    out = terms[0]
    for t in terms[1:]:
        out = _both(out, t, out.values + t.values)
    return out


def _difference(d, ctx):
    a, b = evaluate(d["minuend"], ctx), evaluate(d["subtrahend"], ctx)
    return _both(a, b, a.values - b.values)


def _isbi(d, ctx):
    with np.errstate(all="ignore"):
        values = np.asarray(ISBI_BY_KEY[d["key"]](ctx.image_mm), dtype=np.float64)
    valid = np.isfinite(values)
    reason = "the challenge's formula is undefined here (degenerate geometry)"
    return Evaluated(np.where(valid, values, 0.0), valid, reason)


EVALUATORS = {
    "angle": _angle, "angle_between_lines": _angle_between_lines, "signed_angle": _signed_angle,
    "distance": _distance, "distance_to_line": _distance_to_line, "projected_offset": _projected_offset,
    "ratio": _ratio, "sum": _sum, "difference": _difference, "isbi": _isbi,
}


def evaluate(definition, ctx: Context) -> Evaluated:
    """The definition's values (S,) on the context's configurations, and where they are defined."""
    return EVALUATORS[definition["kind"]](definition, ctx)
