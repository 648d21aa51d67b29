"""Drawing the tracing (cephalometry/tracing.py's lines) on a matplotlib Axes: the overlay and the report.

Each line has one colour, the same on the overlay, the report and in Slicer (LINE_RGB), and
its label at its anterior-most end. Which analyses are traced: those of the detection's
"analyses" section (the ones the user chose), else the catalogue's default set.
"""

import numpy as np

from ..cephalometry.tracing import SEGMENTS, tracing_lines

LINE_RGB = {
    "SN": (1.0, 0.85, 0.1), "horizontal": (0.2, 0.9, 1.0), "NA": (1.0, 0.45, 0.1), "NB": (0.95, 0.3, 0.6),
    "A-Pog": (0.6, 1.0, 0.3), "A-B": (0.3, 0.7, 1.0), "facial": (0.8, 0.6, 1.0), "MP-GoGn": (1.0, 0.6, 0.3),
    "MP-GoMe": (1.0, 0.6, 0.3), "Y-axis": (0.9, 0.9, 0.9), "palatal": (0.4, 1.0, 0.8), "S-Ar": (1.0, 0.85, 0.1),
    "Ar-Go": (1.0, 0.75, 0.4), "N-Go": (0.85, 0.85, 0.55), "Ar-A": (0.7, 0.8, 1.0), "Ar-Gn": (0.7, 0.8, 1.0),
    "N-perp": (0.2, 0.9, 1.0), "A-vert": (0.5, 0.95, 1.0), "H-line": (1.0, 0.5, 0.8), "Sn-Pog'": (0.9, 1.0, 0.4),
}
DEFAULT_RGB = (1.0, 1.0, 1.0)
SHORT = {"facial": "N-Pog", "MP-GoGn": "MP Go-Gn", "MP-GoMe": "MP Go-Me", "palatal": "PP", "Y-axis": "Y-axis"}


def line_rgb(name: str) -> tuple:
    return LINE_RGB.get(name.split(":")[0], DEFAULT_RGB)


def detection_analyses(detection) -> list:
    """The analyses to trace: the detection's "analyses" entries, else the default set on FH."""
    entries = detection.extra.get("analyses")
    if entries:
        return entries
    from ..cephalometry.analyses import shipped_catalogue

    return [{"key": a.key, "name": a.name, "horizontal": None} for a in shipped_catalogue().select(None)]


def detection_lines(detection, analyses=None) -> list:
    """The tracing lines (image px) of `analyses` (default detection_analyses) at the detection's points."""
    if len(detection.landmarks) != 19:
        return []
    return tracing_lines(detection.points_px, detection.spacing_mm,
                         detection_analyses(detection) if analyses is None else analyses)


def draw_lines(ax, lines, scale: float = 1.0, labels: bool = True, linewidth: float = 1.2, fontsize: float = 6.5):
    """Draw `lines` on ax; scale maps image pixels to the axes' (a shown image subsampled by 1/scale)."""
    from matplotlib import patheffects

    halo = [patheffects.withStroke(linewidth=linewidth + 1.2, foreground="black")]
    for line in lines:
        (x0, y0), (x1, y1) = ((np.asarray(p) + 0.5) * scale - 0.5 for p in (line.start_px, line.end_px))
        colour = line_rgb(line.name)
        ax.plot([x0, x1], [y0, y1], "--" if line.style == "dashed" else "-", color=colour, lw=linewidth,
                alpha=0.9, path_effects=halo)
        if labels and line.name not in SEGMENTS:  # a segment between two labelled points names itself
            ax.annotate(short_label(line), (x1, y1), xytext=(3, 2), textcoords="offset points", fontsize=fontsize,
                        color=colour, path_effects=[patheffects.withStroke(linewidth=1.5, foreground="black")])


def short_label(line) -> str:
    """The line's name on a picture: SN, NA, FH or HP, MP Go-Me, N-perp, H-line, ..."""
    base = line.name.split(":")[0]
    if base == "horizontal":
        return "HP" if line.name.endswith(":constructed") else "FH"
    return SHORT.get(base, base)


def tracing_caption(detection) -> str:
    """One caption line: which analyses' lines are drawn."""
    entries = detection_analyses(detection)
    names = [e["name"] if isinstance(e, dict) else e[0] for e in entries]
    return f"Lines: the tracing of {', '.join(names)} (docs/analyses.md)." if names else ""
