"""The tracing: the lines and planes each named analysis uses, as segments in image pixels.

Pure geometry, no drawing: the overlay PNG, the report's analysis pages and the Slicer
module's line nodes all draw what `tracing_lines` returns. A line is built in mm (so a
non-square pixel spacing keeps perpendiculars perpendicular) and handed back in pixels.
Planes are drawn past their defining points (EXTEND_MM at each end). A line whose point is
missing, or whose two points coincide, is left out. Which lines an analysis draws is the
table ANALYSIS_LINES; the horizontal is Frankfort (Po-Or) or, when the analysis used it, the
constructed horizontal through N (S-N turned 7 deg, anterior end down).
"""

from dataclasses import dataclass

import numpy as np

from .anatomy import EPS_MM, INDEX, LOWER_FACE

EXTEND_MM = 10.0

# name: (label, first point, second point, style); "horizontal", "N-perp" and "A-vert" are built below
PLANES = {
    "SN": ("S-N", "S", "N", "solid"),
    "NA": ("N-A", "N", "A", "solid"),
    "NB": ("N-B", "N", "B", "solid"),
    "A-Pog": ("A-Pog", "A", "Pog", "solid"),
    "A-B": ("A-B plane", "A", "B", "solid"),
    "facial": ("facial plane N-Pog", "N", "Pog", "solid"),
    "MP-GoGn": ("mandibular plane Go-Gn", "Go", "Gn", "solid"),
    "MP-GoMe": ("mandibular plane Go-Me", "Go", "Me", "solid"),
    "Y-axis": ("Y-axis S-Gn", "S", "Gn", "dashed"),
    "palatal": ("palatal plane PNS-ANS", "PNS", "ANS", "solid"),
    "S-Ar": ("S-Ar", "S", "Ar", "solid"),
    "Ar-Go": ("ramus Ar-Go", "Ar", "Go", "solid"),
    "N-Go": ("N-Go", "N", "Go", "dashed"),
    "Ar-A": ("Ar-A", "Ar", "A", "dashed"),
    "Ar-Gn": ("Ar-Gn", "Ar", "Gn", "dashed"),
    "H-line": ("H-line UL-Pog'", "UL", "Pog'", "solid"),
    "Sn-Pog'": ("Sn-Pog'", "Sn", "Pog'", "solid"),
}
SEGMENTS = {"S-Ar", "Ar-Go", "N-Go", "Ar-A", "Ar-Gn"}  # lengths: drawn between their points, not extended

ANALYSIS_LINES = {
    "steiner": ("SN", "NA", "NB", "MP-GoGn"),
    "downs": ("horizontal", "facial", "A-Pog", "A-B", "MP-GoMe", "Y-axis"),
    "bjork_jarabak": ("SN", "S-Ar", "Ar-Go", "MP-GoMe", "N-Go"),
    "mcnamara": ("horizontal", "N-perp", "A-vert", "A-Pog", "MP-GoMe", "Ar-A", "Ar-Gn"),
    "tweed": ("horizontal", "MP-GoMe"),
    "ricketts": ("horizontal", "facial", "A-Pog", "MP-GoMe"),
    "holdaway": ("H-line",),
    "legan_burstone": ("Sn-Pog'",),
    "sagittal_jaw": ("horizontal", "palatal"),
    "isbi2015": ("SN", "NA", "NB", "horizontal", "palatal", "MP-GoGn"),
}


@dataclass(frozen=True)
class Line:
    """One traced line: start and end (x, y) in image pixels, which analyses draw it, solid or dashed."""

    name: str
    label: str
    start_px: tuple
    end_px: tuple
    style: str
    analyses: tuple


def _unit(v):
    n = float(np.linalg.norm(v))
    return None if not np.isfinite(n) or n <= EPS_MM else np.asarray(v) / n


def _inferior(mm: dict, direction, origin):
    """The unit perpendicular to `direction` that points to the lower face (the jaws)."""
    perp = np.array([-direction[1], direction[0]])
    face = [mm[k] for k in LOWER_FACE if np.all(np.isfinite(mm[k]))]
    if not face:
        return None
    return perp if float(np.dot(np.mean(face, axis=0) - origin, perp)) >= 0 else -perp


def horizontal_direction(mm: dict, which: str, constructed_deg: float = 7.0):
    """Unit vector (mm, image axes) of the reference horizontal, pointing anteriorly; None if undefined."""
    if which == "FH":
        return _unit(mm["Or"] - mm["Po"])
    x = _unit(mm["N"] - mm["S"])
    if x is None:
        return None
    down = _inferior(mm, x, mm["N"])
    if down is None:
        return None
    t = np.radians(constructed_deg)
    return np.cos(t) * x + np.sin(t) * down


def _extended(a, b, extend=EXTEND_MM):
    d = _unit(b - a)
    return None if d is None else (a - extend * d, b + extend * d)


def _horizontal(mm, which, constructed_deg):
    h = horizontal_direction(mm, which, constructed_deg)
    if h is None:
        return None
    if which == "FH":
        return _extended(mm["Po"], mm["Or"])
    back = float(np.linalg.norm(mm["N"] - mm["S"])) + EXTEND_MM
    return mm["N"] - back * h, mm["N"] + EXTEND_MM * h


def _perpendicular(mm, at, down_to, which, constructed_deg):
    """From EXTEND_MM above `at` down, perpendicular to the horizontal, to the level of `down_to`."""
    h = horizontal_direction(mm, which, constructed_deg)
    if h is None:
        return None
    down = _inferior(mm, h, mm[at])
    if down is None:
        return None
    depth = max(float(np.dot(mm[down_to] - mm[at], down)), 0.0) + EXTEND_MM
    return mm[at] - EXTEND_MM * down, mm[at] + depth * down


def _segment_mm(name, mm, which, constructed_deg):
    if name == "horizontal":
        return _horizontal(mm, which, constructed_deg)
    if name == "N-perp":
        return _perpendicular(mm, "N", "Me", which, constructed_deg)
    if name == "A-vert":
        return _perpendicular(mm, "A", "UIT", which, constructed_deg)
    _, p, q, _ = PLANES[name]
    if name in SEGMENTS:
        return (mm[p], mm[q]) if _unit(mm[q] - mm[p]) is not None else None
    return _extended(mm[p], mm[q])


def _label_style(name, which, constructed_deg):
    if name == "horizontal":
        text = "FH Po-Or" if which == "FH" else f"HP (S-N {constructed_deg:g} deg)"
        return text, "solid"
    if name == "N-perp":
        return "N-perpendicular", "dashed"
    if name == "A-vert":
        return "A-vertical", "dashed"
    return PLANES[name][0], PLANES[name][3]


def horizontal_name(analysis_entry: dict) -> str:
    """"FH" or "constructed", from an analyses entry's "horizontal" label (None: FH)."""
    return "constructed" if (analysis_entry.get("horizontal") or "").startswith("constructed") else "FH"


def tracing_lines(points_px, spacing_mm, analyses, constructed_deg: float = 7.0) -> list:
    """The lines of the analyses (entries of the "analyses" JSON list, or (key, "FH"|"constructed") pairs).

    points_px: (19, 2) landmarks in image pixels (NaN: missing). A line two analyses share is
    drawn once, naming both; the horizontal differs per choice, so FH and HP can both appear.
    """
    spacing = np.asarray(spacing_mm, dtype=np.float64).reshape(-1)[:2] * np.ones(2)
    pts = np.asarray(points_px, dtype=np.float64) * spacing
    mm = {name: pts[i] for name, i in INDEX.items()}
    chosen = {}
    for entry in analyses:
        key, which = (entry["key"], horizontal_name(entry)) if isinstance(entry, dict) else entry
        for name in ANALYSIS_LINES.get(key, ()):
            uses_horizontal = name in ("horizontal", "N-perp", "A-vert")
            ident = (name, which if uses_horizontal else None)
            chosen.setdefault(ident, []).append(key)
    out = []
    for (name, which), keys in chosen.items():
        with np.errstate(invalid="ignore"):
            seg = _segment_mm(name, mm, which or "FH", constructed_deg)
        if seg is None or not all(np.all(np.isfinite(p)) for p in seg):
            continue
        label, style = _label_style(name, which or "FH", constructed_deg)
        a, b = (tuple(float(v) for v in p / spacing) for p in seg)
        out.append(Line(name if which in (None, "FH") else f"{name}:{which}", label, a, b, style, tuple(keys)))
    return out
