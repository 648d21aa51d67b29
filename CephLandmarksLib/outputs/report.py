"""The printable report (A4 pages): an overview page, then a page per chosen analysis.

The overview page holds the overlay, the landmark table and the key rows of each chosen named
analysis (value, 90 % interval, norm, deviation, interpretation, P(outside the norm)), each
pointing to its own page (outputs/analysis_pages.py). The ISBI 2015 challenge's class bands are
not clinical norms: they appear only on the ISBI 2015 page, never on the overview. A detection
without named analyses gets the flat measurements there, values and intervals only.

Written as NAME_report.pdf and NAME_report.png, both or neither (files.write_group).  Like
detect, it never replaces the input image or an existing file that is not an earlier report
of ours (both files carry files.OUTPUT_TAG in their metadata).  Uses matplotlib's object API
(no pyplot state); needs no torch.

After review in Slicer, the points the clinician corrected are marked: CORRECTED_MARK
after the abbreviation in the landmark table and after each measurement that uses one,
a blue x in the overlay, and a footnote.
"""

import datetime
import math
from pathlib import Path

import numpy as np

from ..cephalometry.measurement_uncertainty import DEFAULT_SAMPLES
from ..files import OUTPUT_TAG, check_replaceable, is_tagged, write_group
from ..text import probability_text
from ..uncertainty.regions import NOT_LOCALISED_AREA_MM2, area_text, localised, region_caption
from .analysis_pages import UNIT_TEXT, analysis_figures, row_note, save_pages_pdf, save_pages_png, table_rows

A4_INCHES = (8.27, 11.69)
PNG_DPI = 150
FLAGGED_RGB = (0.85, 0.1, 0.1)
CONFIDENT_RGB = (0.1, 0.75, 0.2)
UNCERTAIN_ROW_RGB = (1.0, 0.88, 0.55)
FLAGGED_ROW_RGB = (1.0, 0.82, 0.82)
HEADER_RGB = (0.86, 0.89, 0.94)
CORRECTED_RGB = (0.15, 0.35, 0.95)
CORRECTED_MARK = "*"
PDF_METADATA = {"Creator": OUTPUT_TAG}  # how a later run recognises the file as ours
PNG_METADATA = {"Software": OUTPUT_TAG}
REPORT_SUFFIXES = ("_report.pdf", "_report.png")
DISCLAIMER = "Research use only - not a medical device. Check every point and value before clinical use."


def _fmt(value: float, unit: str) -> str:
    return f"{value:.3f}" if unit == "ratio" else f"{value:.1f}"


def measurement_rows(results: list) -> list:
    """Table rows (strings) of the flat measurement reports; shared by the PDF and the Slicer table.

    Columns: measurement, unit, value at the detected points, median, 90 % interval. No class:
    the flat list's classes are the ISBI 2015 challenge's bands, not clinical norms, and are shown
    only under the ISBI 2015 analysis.
    """
    return [[f"{r['key']}: {r['name']}" if r["key"] not in r["name"] else r["name"],
             {"deg": "°"}.get(r["unit"], r["unit"]),
             _fmt(r["value"], r["unit"]), _fmt(r["median"], r["unit"]),
             f"{_fmt(r['p05'], r['unit'])} to {_fmt(r['p95'], r['unit'])}"] for r in results]


def corrected_landmarks(detection, corrected=None) -> set:
    """Abbreviations of the points the clinician corrected: `corrected`, else the detection's
    extra "corrected_landmarks" (set by the Slicer module's reviewedDetection)."""
    return set(detection.extra.get("corrected_landmarks", ()) if corrected is None else corrected)


def landmark_rows(detection, corrected=()) -> list:
    mark = lambda lm: CORRECTED_MARK if lm.abbreviation in corrected else ""  # noqa: E731
    return [[str(lm.index), f"{lm.abbreviation}{mark(lm)}  {lm.name}", "missing" if lm.missing else f"{lm.x_mm:.1f}",
             "" if lm.missing else f"{lm.y_mm:.1f}", f"{lm.confidence:.3f}", f"{lm.ere_mm:.2f}",
             probability_text(lm.p_large_error), _flag_cell(lm)] for lm in detection.landmarks]


def _flag_cell(lm) -> str:
    """ "FLAG", with "?" when the point's 90 % region is not localised (uncertainty/regions.py)."""
    far = "" if lm.missing or localised(lm.region_90_area_mm2) else "?"
    return " ".join(t for t in ("FLAG" if lm.flagged else "", far) if t)


def _table(ax, header, rows, col_widths, fontsize, highlight):
    ax.axis("off")
    t = ax.table(cellText=rows, colLabels=header, colWidths=col_widths, loc="upper center", cellLoc="left")
    t.auto_set_font_size(False)
    t.set_fontsize(fontsize)
    n = len(rows) + 1
    for (i, _), cell in t.get_celld().items():
        cell.set_height(1.0 / n)
        cell.set_linewidth(0.3)
        if i == 0:
            cell.set_facecolor(HEADER_RGB)
            cell.set_text_props(weight="bold")
        elif highlight[i - 1] is not None:
            cell.set_facecolor(highlight[i - 1])
    return t


def _overlay(ax, pixels, detection, corrected=()):
    from ..imaging.images import normalise

    step = max(1, math.ceil(max(pixels.shape) / 900))  # keep the embedded image small
    img = normalise(pixels[::step, ::step])
    h, w = pixels.shape
    ax.imshow(img, cmap="gray", vmin=0, vmax=1, extent=(-0.5, w - 0.5, h - 0.5, -0.5), interpolation="antialiased")
    for lm in (lm for lm in detection.landmarks if not lm.missing):
        colour = FLAGGED_RGB if lm.flagged else CONFIDENT_RGB
        far = not localised(lm.region_90_area_mm2)  # "anywhere": a dashed ring marked "?", no contour
        for line in [] if far else lm.contours_px.get("90", []):  # what uncertainty/regions.py draws
            line = np.asarray(line)
            if len(line) > 1:
                ax.plot(line[:, 0], line[:, 1], color=colour, linewidth=0.5, alpha=0.8)
        if far:
            _not_localised_mark(ax, lm.x_px, lm.y_px, colour, h)
        if lm.abbreviation in corrected:
            colour = CORRECTED_RGB
        ax.plot(lm.x_px, lm.y_px, "x" if lm.abbreviation in corrected else "+", color=colour, markersize=6,
                markeredgewidth=1.0)
        ax.annotate(lm.abbreviation, (lm.x_px, lm.y_px), xytext=(3, 3), textcoords="offset points",
                    fontsize=5.5, color=colour)
    ax.set_xlim(-0.5, w - 0.5)
    ax.set_ylim(h - 0.5, -0.5)
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_title("+ landmark (green: confident, red: flagged" + (", blue x: corrected" if corrected else "") + ")\n"
                 f"lines: 90 % regions; dashed ring ?: region not localised (over {area_text(NOT_LOCALISED_AREA_MM2)})",
                 fontsize=6.5)
    notes = region_caption(detection.landmarks)
    if notes:
        import textwrap

        ax.set_xlabel("\n".join(textwrap.wrap(notes, 95)[:3]), fontsize=5.5)


def _not_localised_mark(ax, x, y, colour, height_px):
    from matplotlib.patches import Circle

    r = 0.025 * height_px
    ax.add_patch(Circle((x, y), r, fill=False, ls=(0, (3, 2)), ec=colour, lw=0.8))
    ax.annotate("?", (x - 0.7 * r, y - 0.7 * r), ha="right", va="bottom", fontsize=6, color=colour, weight="bold")


SUMMARY_ROWS = {  # the overview's key rows of an analysis; one not named here shows every row
    "steiner": ("SNA", "SNB", "ANB", "GoGn-SN", "U1-NA", "L1-NB"),
    "downs": ("facial-angle", "convexity", "MP-angle", "Y-axis"),
    "bjork_jarabak": ("saddle", "articular", "gonial", "bjork-sum", "jarabak-ratio"),
    "mcnamara": ("A-Nperp", "Pog-Nperp", "LAFH", "MP-angle"),
}
SUMMARY_COLUMNS = ("Analysis", "Measurement", "value", "90 % interval", "norm", "dev. SD", "interpretation",
                   "P(out)", "note")
SUMMARY_WIDTHS = (0.125, 0.20, 0.05, 0.10, 0.12, 0.05, 0.16, 0.05, 0.145)
SUMMARY_RECT = (0.03, 0.085, 0.94, 0.405)  # the overview's analyses table, in figure fractions
SUMMARY_FONT_PT = 6.0
CELL_PAD = 0.1  # matplotlib's table cell padding, a fraction of the cell's width
FLAT_COLUMNS = ("Measurement", "unit", "value", "median", "90 % interval")


def is_challenge_analysis(entry) -> bool:
    """The ISBI 2015 analysis: graded by the challenge's class bands, which are not clinical norms."""
    return entry.get("key") == "isbi2015" or any(item.get("challenge_class") for item in entry["measurements"])


def summary_rows(analyses: list, corrected=()) -> tuple:
    """The overview's table: (rows of strings, flagged per row, the challenge analyses' page numbers).

    Per analysis (challenge ones left out) its key rows (SUMMARY_ROWS), the first naming the
    analysis, the second its page (the overview is page 1, the analyses follow in order) and how
    many rows only its page shows. A row resting on a corrected point ends with CORRECTED_MARK.
    """
    rows, flagged, challenge_pages = [], [], []
    for page, entry in enumerate(analyses, start=2):
        if is_challenge_analysis(entry):
            challenge_pages.append(page)
            continue
        keys = SUMMARY_ROWS.get(entry.get("key"))
        chosen = [(item, strings) for item, strings in zip(entry["measurements"], table_rows(entry), strict=True)
                  if keys is None or item["key"] in keys]
        more = len(entry["measurements"]) - len(chosen)
        for k, (item, (_, *cells)) in enumerate(chosen):
            value, interval, norm, dev, words, p, _ = cells
            rows.append([_analysis_label(entry["name"], page, more, len(chosen), k),
                         _measurement_name(item, corrected), value, interval, norm, dev,
                         fit(words, "interpretation"), p, fit(row_note(item), "note")])
            flagged.append(bool(item.get("flagged_points")))
    return rows, flagged, challenge_pages


def _text_pt(text: str) -> float:
    from matplotlib.font_manager import FontProperties
    from matplotlib.textpath import TextToPath

    return TextToPath().get_text_width_height_descent(text, FontProperties(size=SUMMARY_FONT_PT), ismath=False)[0]


def fit(text: str, column: str, suffix: str = "") -> str:
    """text + suffix, text cut with an ellipsis where needed so that it fits the overview table's column:
    a long name must not run into the next column."""
    room = SUMMARY_WIDTHS[SUMMARY_COLUMNS.index(column)] * SUMMARY_RECT[2] * A4_INCHES[0] * 72 * (1 - 2 * CELL_PAD)
    if _text_pt(text + suffix) <= room:
        return text + suffix
    while len(text) > 1 and _text_pt(text.rstrip() + "…" + suffix) > room:
        text = text[:-1]
    return text.rstrip() + "…" + suffix


def _measurement_name(item, corrected) -> str:
    """'SNB angle (°) *': the name cut to fit, its unit and the corrected mark kept."""
    unit = f" ({UNIT_TEXT.get(item['unit'], '').strip() or item['unit']})"
    mark = f" {CORRECTED_MARK}" if set(item.get("rests_on") or ()) & set(corrected) else ""
    return fit(item["name"], "Measurement", unit + mark)


def _analysis_label(name, page, more, n_rows, k) -> str:
    """The Analysis cell of an analysis' k-th row: its name, then its page and how many rows only it shows."""
    name = name.split(" (")[0]  # "Ricketts (computable part)": its page says which
    where = f"p. {page}" + (f" (+{more} row{'s' if more > 1 else ''})" if more else "")
    if n_rows == 1:
        return fit(name, "Analysis", f", {where}") if k == 0 else ""
    return {0: fit(name, "Analysis"), 1: where}.get(k, "")


def _analyses_summary(fig, ax, analyses, corrected) -> None:
    """The named analyses' key rows, each analysis pointing to its page; the challenge's page named apart."""
    rows, flagged, challenge_pages = summary_rows(analyses, corrected)
    challenge = ""
    if challenge_pages:
        pages = ", ".join(f"p. {p}" for p in challenge_pages)
        challenge = (f"\nISBI 2015: the challenge's eight measurements and its class bands, \"ISBI 2015 challenge "
                     f"classes (benchmark, not clinical norms)\", are on {pages} only.")
    ax.set_title(f"Named analyses at the {'current' if corrected else 'detected'} points: key rows (every row, "
                 "the deviation chart and the tracing on the analysis' page). P(out): probability that the true "
                 "value\nlies outside the norm band, from "
                 f"{DEFAULT_SAMPLES} draws of the landmarks from their heatmaps; red rows rest on a flagged point "
                 "(read as uncertain, not as a finding)" + challenge, fontsize=6.6)
    if rows:
        t = _table(ax, list(SUMMARY_COLUMNS), rows, list(SUMMARY_WIDTHS), SUMMARY_FONT_PT,
                   [FLAGGED_ROW_RGB if f else None for f in flagged])
        for cell in t.get_celld().values():
            cell.set_height(min(1.0 / (len(rows) + 1), 0.055))
    else:
        ax.axis("off")


def _flat_measurements(ax, results, corrected) -> None:
    """Without named analyses: the flat measurements, values and intervals only (no norms, no classes)."""
    ax.set_title(f"Measurements at the {'current' if corrected else 'detected'} points: value, median and 90 % "
                 f"interval of {DEFAULT_SAMPLES} draws from the heatmaps (no named analyses: no norms)", fontsize=7)
    rows = measurement_rows(results)
    for row, r in zip(rows, results, strict=True):
        if r.get("corrected"):
            row[0] += f" {CORRECTED_MARK}"
    if rows:
        _table(ax, list(FLAT_COLUMNS), rows, [0.46, 0.08, 0.12, 0.12, 0.22], 6.2, [None] * len(rows))
    else:
        ax.axis("off")


def report_figure(pixels, detection, results: list, when=None, corrected=None):
    """The overview page as a matplotlib Figure (A4 portrait).  corrected: abbreviations of the points
    the clinician corrected (default: the detection's extra "corrected_landmarks")."""
    from matplotlib.figure import Figure

    corrected = corrected_landmarks(detection, corrected)
    fig = Figure(figsize=A4_INCHES)
    model = detection.model
    when = when or datetime.datetime.now().strftime("%Y-%m-%d %H:%M")
    fig.text(0.04, 0.975, "Cephalometric landmarks and analyses", fontsize=13, weight="bold", va="top")
    fig.text(0.04, 0.955, f"Image: {Path(detection.image_path).name or '(unnamed)'}   "
             f"{detection.image_size[0]} x {detection.image_size[1]} px   Report: {when}", fontsize=7.5, va="top")

    _overlay(fig.add_axes((0.03, 0.535, 0.40, 0.40)), pixels, detection, corrected)

    lm_ax = fig.add_axes((0.45, 0.535, 0.52, 0.40))
    lm_ax.set_title(f"Landmarks (mm from the image's top-left; FLAG: {detection.flag_rule_text()})",
                    fontsize=7)
    _table(lm_ax, ["#", "Landmark", "x mm", "y mm", "conf.", "ERE mm", f"P(>{detection.large_error_mm:g} mm)", ""],
           landmark_rows(detection, corrected), [0.05, 0.36, 0.09, 0.09, 0.09, 0.10, 0.14, 0.08], 6.2,
           [FLAGGED_ROW_RGB if lm.flagged else None for lm in detection.landmarks])

    analyses = detection.extra.get("analyses") or []
    m_ax = fig.add_axes(SUMMARY_RECT)
    if analyses:
        _analyses_summary(fig, m_ax, analyses, corrected)
    else:
        _flat_measurements(m_ax, results, corrected)

    if corrected:
        fig.text(0.04, 0.068, f"{CORRECTED_MARK} corrected by the clinician ({', '.join(sorted(corrected))}): the "
                 "point is where the clinician put it (confidence, ERE and P describe the detected point); "
                 f"rows marked {CORRECTED_MARK} take it as exact.", fontsize=6.5, va="top",
                 color=CORRECTED_RGB)
    sx, sy = detection.spacing_mm
    fig.text(0.04, 0.054, f"Model: {model.get('name', '?')} version {model.get('version', '?')} "
             f"(sha256 {str(model.get('sha256', ''))[:12]})   Pixel spacing: {sx:g} x {sy:g} mm "
             f"({detection.spacing_source})" + ("  - ASSUMED, distances may be wrong" if
                                                detection.spacing_source == "assumed" else ""),
             fontsize=6.5, va="top")
    fig.text(0.04, 0.041, ("Norms, their sources and the patient context: on each analysis' page. " if analyses else
                           "No named analyses in this detection: no norms (docs/analyses.md). ")
             + "ERE: expected radial error from the calibrated heatmap;", fontsize=6.5, va="top")
    r = f"{detection.large_error_mm:g} mm"
    fig.text(0.04, 0.030, f"P(>{r}): the heatmap's probability that the point is more than {r} off "
             "(it cannot see systematic errors).", fontsize=6.5, va="top")
    fig.text(0.04, 0.016, DISCLAIMER, fontsize=7, weight="bold", va="top")

    return fig


def report_paths(out_dir, stem) -> list:
    """[NAME_report.pdf, NAME_report.png] in out_dir."""
    return [Path(out_dir) / f"{stem}{suffix}" for suffix in REPORT_SUFFIXES]


def report_pages(pixels, detection, results, corrected=None) -> list:
    """The report's pages (matplotlib Figures): the overview (report_figure), then a page per analysis
    in the detection's "analyses" section (analysis_pages.analysis_figures)."""
    return [report_figure(pixels, detection, results, corrected=corrected),
            *analysis_figures(pixels, detection, DISCLAIMER)]


def write_report(pixels, detection, results, out_dir, stem, corrected=None) -> list:
    """NAME_report.pdf and NAME_report.png in out_dir; both or neither.  corrected: see report_figure.
    An existing file at either name that is not an earlier report is refused (CephError), untouched."""
    pdf, png = report_paths(out_dir, stem)
    for path in (pdf, png):
        check_replaceable(path, is_tagged)
    pages = report_pages(pixels, detection, results, corrected)
    return write_group([
        (pdf, lambda tmp: save_pages_pdf(pages, tmp, PDF_METADATA)),
        (png, lambda tmp: save_pages_png(pages, tmp, PNG_DPI, PNG_METADATA)),
    ])

