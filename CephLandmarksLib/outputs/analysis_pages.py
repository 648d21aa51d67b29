"""The report's analysis pages: one A4 page per chosen analysis (table, deviation chart, tracing).

Each page holds:
- the table: value at the points, 90 % interval, norm, deviation in SD, interpretation,
  P(outside the norm), and a note (flagged point, surrogate, reference line, why undefined);
- the deviation chart, in the manner of a "wiggle" chart or a Vorhies-Adams polygon: per
  measurement the norm band (mean +- 1 SD, or the range), the value and its 90 % interval,
  all in units of the band's half-width, so every row reads on one scale;
- the tracing: the radiograph around the landmarks with the analysis' lines.
The challenge's class bands appear only on the ISBI 2015 page, under its own label.
Torch-free, matplotlib's object API (report.py's rule).
"""

import math

import numpy as np

from .tracing import detection_lines, draw_lines

A4_INCHES = (8.27, 11.69)
CHART_LIMIT = 3.0  # the chart shows -3..+3 half-widths; values beyond are drawn at the edge with an arrow
WITHIN_RGB = (0.1, 0.6, 0.25)
OUTSIDE_RGB = (0.9, 0.45, 0.05)
FLAGGED_RGB = (0.85, 0.1, 0.1)
BAND_RGB = (0.8, 0.92, 0.8)
HEADER_RGB = (0.86, 0.89, 0.94)
FLAG_ROW_RGB = (1.0, 0.86, 0.86)
UNIT_TEXT = {"deg": "°", "mm": " mm", "%": " %", "ratio": ""}
TABLE_COLUMNS = ("Measurement", "value", "90 % interval", "norm", "dev. SD", "interpretation", "P(out)", "note")
CHALLENGE_HEADER = "challenge class"  # the interpretation column of the ISBI 2015 page
LABEL_RGB = (0.75, 0.3, 0.0)  # the norm label of an analysis graded by other than clinical norms
TABLE_WIDTHS = (0.25, 0.06, 0.11, 0.12, 0.055, 0.215, 0.055, 0.135)
CHARS = {"name": 38, "chart": 30, "words": 40, "note": 24}  # what fits the columns at the page's font size
CHART_TITLE = ("Deviation from the norm\nband: the norm (±1 SD or the range)\ndot: the value, bar: its 90 % interval\n"
               "green within, orange outside,\nred-edged diamond: rests on a flagged point")


def short(text: str, n: int) -> str:
    """text cut to n characters with an ellipsis: a long name must not run into the next column."""
    return text if len(text) <= n else text[: n - 1].rstrip() + "…"


def _num(value, unit) -> str:
    if value is None:
        return "-"
    return f"{value:.3f}" if unit == "ratio" else f"{value:.1f}"


def norm_text(norm, unit) -> str:
    """'82 ± 2° (conv.)', '0 to 4°', '65 % (mean only)', or '-' without a norm."""
    if not norm:
        return "-"
    u = UNIT_TEXT.get(unit, "")
    if norm.get("sd") is not None:
        return f"{norm['mean']:g} ± {norm['sd']:g}{u}" + (" (conv.)" if norm.get("sd_from") == "convention" else "")
    if norm.get("low") is not None:
        return f"{norm['low']:g} to {norm['high']:g}{u}"
    return f"{norm['mean']:g}{u} (mean only)" if norm.get("mean") is not None else "-"


def row_note(item) -> str:
    """The short note beside a row: flagged points first, then surrogates, the reference, why undefined."""
    notes = []
    if item.get("flagged_points"):
        notes.append("flagged: " + ", ".join(item["flagged_points"]))
    if item.get("value") is None and item.get("undefined"):
        notes.append(item["undefined"])
    if item.get("surrogates"):
        notes.append("surrogate")
    if item.get("reference"):
        notes.append("HP" if item["reference"].startswith("constructed") else "FH")
    if item.get("norm_missing") and item.get("value") is not None:
        notes.append("no norm")
    return "; ".join(notes)


def table_rows(analysis) -> list:
    rows = []
    for item in analysis["measurements"]:
        unit = item["unit"]
        lo_hi = item.get("interval_90")
        words = item.get("challenge_class") or item.get("interpretation") or "-"
        p = item.get("p_outside_norm")
        rows.append([
            short(f"{item['name']} ({UNIT_TEXT.get(unit, '').strip() or unit})", CHARS["name"]),
            _num(item["value"], unit),
            f"{_num(lo_hi[0], unit)} to {_num(lo_hi[1], unit)}" if lo_hi else "-",
            norm_text(item.get("norm"), unit),
            "-" if item.get("deviation_sd") is None else f"{item['deviation_sd']:+.1f}",
            short(words, CHARS["words"]), "-" if p is None else f"{100 * p:.0f} %",
            short(row_note(item), CHARS["note"]),
        ])
    return rows


def scaled(item):
    """(value, lo, hi) in half-widths of the norm band from its centre; None without a band or a value."""
    band = (item.get("norm") or {}).get("band")
    if not band or item.get("value") is None:
        return None
    centre, half = (band[0] + band[1]) / 2, (band[1] - band[0]) / 2
    if half <= 0:
        return None
    lo_hi = item.get("interval_90") or [item["value"], item["value"]]
    return tuple((v - centre) / half for v in (item["value"], *lo_hi))


def deviation_chart(ax, analysis) -> None:
    """The wiggle chart: a row per measurement, the band at -1..+1, the value joined row to row."""
    items = analysis["measurements"]
    n = len(items)
    ax.axvspan(-1, 1, color=BAND_RGB, zorder=0)
    ax.axvline(0, color="0.5", lw=0.6, zorder=1)
    path = []
    for k, item in enumerate(items):
        y = n - 1 - k
        s = scaled(item)
        if s is None:
            ax.text(0, y, "no norm" if item.get("value") is not None else "undefined", ha="center", va="center",
                    fontsize=6, color="0.4")
            continue
        v, lo, hi = (float(np.clip(x, -CHART_LIMIT, CHART_LIMIT)) for x in s)
        flagged = bool(item.get("flagged_points"))
        colour = WITHIN_RGB if abs(s[0]) <= 1 else OUTSIDE_RGB
        ax.plot([lo, hi], [y, y], "-", color=colour, lw=2.2, alpha=0.45, solid_capstyle="butt")
        if flagged:  # a red diamond: the value rests on a flagged point
            ax.plot(v, y, "D", mfc=colour, ms=6, mec=FLAGGED_RGB, mew=1.4, zorder=3)
        else:
            ax.plot(v, y, "o", color=colour, ms=5, mec="black", mew=0.4, zorder=3)
        if abs(s[0]) > CHART_LIMIT:
            ax.annotate("", (v + 0.25 * np.sign(s[0]), y), (v, y), arrowprops={"arrowstyle": "->", "color": colour})
        path.append((v, y))
    if len(path) > 1:
        ax.plot(*zip(*path, strict=True), "-", color="0.25", lw=0.7, zorder=2)
    ax.set_yticks(range(n))
    ax.set_yticklabels([short(it["name"], CHARS["chart"]) for it in reversed(items)], fontsize=6)
    ax.set_ylim(-0.7, n - 0.3)
    ax.set_xlim(-CHART_LIMIT - 0.3, CHART_LIMIT + 0.3)
    ax.set_xticks([-3, -2, -1, 0, 1, 2, 3])
    ax.tick_params(axis="x", labelsize=6)
    ax.set_xlabel("← below   deviation (SD or half-range)   above →", fontsize=6)
    ax.set_title(CHART_TITLE, fontsize=6.2)


def _crop(points_px, shape, margin=0.12):
    finite = points_px[np.isfinite(points_px).all(axis=1)]
    h, w = shape
    if len(finite) == 0:
        return 0, w, 0, h
    (x0, y0), (x1, y1) = finite.min(axis=0), finite.max(axis=0)
    mx, my = margin * (x1 - x0 + 1), margin * (y1 - y0 + 1)
    return max(0, x0 - mx), min(w, x1 + mx), max(0, y0 - my), min(h, y1 + my)


def tracing_axes(ax, pixels, detection, analysis) -> None:
    """The radiograph around the landmarks, the analysis' lines and the points it rests on (flagged in red)."""
    from ..imaging.images import normalise

    h, w = pixels.shape
    step = max(1, math.ceil(max(pixels.shape) / 900))
    ax.imshow(normalise(pixels[::step, ::step]), cmap="gray", vmin=0, vmax=1,
              extent=(-0.5, w - 0.5, h - 0.5, -0.5), interpolation="antialiased")
    lines = detection_lines(detection, [analysis])
    draw_lines(ax, lines, labels=True, linewidth=1.0, fontsize=5.5)
    used = {p for item in analysis["measurements"] for p in item.get("rests_on", [])}
    flagged = {p for item in analysis["measurements"] for p in item.get("flagged_points", [])}
    for lm in detection.landmarks:
        if lm.missing or lm.abbreviation not in used:
            continue
        colour = FLAGGED_RGB if lm.abbreviation in flagged else (1.0, 1.0, 1.0)
        ax.plot(lm.x_px, lm.y_px, "o", ms=3, mfc=colour, mec="black", mew=0.4)
        ax.annotate(lm.abbreviation, (lm.x_px, lm.y_px), xytext=(3, -5), textcoords="offset points", fontsize=5.5,
                    color=colour)
    x0, x1, y0, y1 = _crop(detection.points_px, pixels.shape)
    ax.set_xlim(x0, x1)
    ax.set_ylim(y1, y0)
    ax.set_xticks([])
    ax.set_yticks([])
    names = ", ".join(dict.fromkeys(line.label for line in lines)) or "none drawable"
    ax.set_title(f"Tracing: {names}", fontsize=6, wrap=True)


def _table(ax, analysis) -> None:
    ax.axis("off")
    rows = table_rows(analysis)
    header = [CHALLENGE_HEADER if c == "interpretation" and any(it.get("challenge_class") for it in
                                                                 analysis["measurements"]) else c
              for c in TABLE_COLUMNS]
    t = ax.table(cellText=rows, colLabels=header, colWidths=list(TABLE_WIDTHS), loc="upper center", cellLoc="left")
    t.auto_set_font_size(False)
    t.set_fontsize(5.8)
    n = len(rows) + 1
    height = min(1.0 / n, 0.07)
    for (i, _), cell in t.get_celld().items():
        cell.set_height(height)
        cell.set_linewidth(0.3)
        if i == 0:
            cell.set_facecolor(HEADER_RGB)
            cell.set_text_props(weight="bold")
        elif analysis["measurements"][i - 1].get("flagged_points"):
            cell.set_facecolor(FLAG_ROW_RGB)


def _footnotes(analysis, context) -> list:
    """Lines under the table: the norm source(s), the horizontal, surrogates, flag notes, patient context."""
    lines = []
    if analysis.get("norm_label"):
        lines.append(f"Norms: {analysis['norm_label']}.")
    sources = dict.fromkeys((it["norm"] or {}).get("source") for it in analysis["measurements"] if it.get("norm"))
    sources.pop(None, None)
    lines += [f"Source: {s}" for s in sources]
    if analysis.get("horizontal"):
        lines.append(f"Reference horizontal: {analysis['horizontal']}.")
    for item in analysis["measurements"]:
        for s in item.get("surrogates") or []:
            lines.append(f"{item['name']}: surrogate: {s}")
    notes = dict.fromkeys(it.get("flag_note") for it in analysis["measurements"] if it.get("flag_note"))
    lines += [f"Flagged: {n}" for n in notes]
    if context:
        who = [f"age {context['age_years']:g} y ({context.get('age_source')})" if context.get("age_years") else "",
               f"sex {context['sex']} ({context.get('sex_source')})" if context.get("sex") else ""]
        who = ", ".join(w for w in who if w) or "age and sex not given: norms for all ages and both sexes"
        lines.append(f"Patient: {who}. Norms file: {context.get('norms', 'shipped')}.")
    lines.append("P(out): probability that the true value lies outside the norm band, from "
                 f"{(context or {}).get('samples', 2000)} draws of the landmarks from their heatmaps.")
    return lines


def analysis_page(pixels, detection, analysis, context=None, disclaimer=""):
    """One analysis' page (a matplotlib Figure): header, tracing, deviation chart, table, footnotes."""
    import textwrap

    from matplotlib.figure import Figure

    fig = Figure(figsize=A4_INCHES)
    fig.text(0.04, 0.975, f"{analysis['name']} analysis", fontsize=13, weight="bold", va="top")
    fig.text(0.04, 0.952, textwrap.fill(analysis.get("description") or "", 130), fontsize=6.8, va="top")
    if analysis.get("norm_label"):  # "ISBI 2015 challenge classes (benchmark, not clinical norms)": not a clinical norm
        fig.text(0.96, 0.972, analysis["norm_label"], fontsize=9, weight="bold", ha="right", va="top", color=LABEL_RGB)
    tracing_axes(fig.add_axes((0.03, 0.49, 0.44, 0.42)), pixels, detection, analysis)
    deviation_chart(fig.add_axes((0.67, 0.52, 0.30, 0.36)), analysis)
    _table(fig.add_axes((0.03, 0.20, 0.94, 0.26)), analysis)
    y = 0.19
    for line in _footnotes(analysis, context):
        for part in textwrap.wrap(line, 170)[:2]:
            if y < 0.03:
                break
            fig.text(0.04, y, part, fontsize=5.6, va="top")
            y -= 0.0105
    fig.text(0.04, 0.016, disclaimer, fontsize=7, weight="bold", va="top")
    return fig


def analysis_figures(pixels, detection, disclaimer: str = "") -> list:
    """A page per analysis in the detection's "analyses" section (none without one), each with the
    report's disclaimer at its foot."""
    context = detection.extra.get("analyses_context")
    return [analysis_page(pixels, detection, a, context, disclaimer) for a in detection.extra.get("analyses") or []]


def save_pages_pdf(figures, path, metadata) -> None:
    """The figures as the pages of one PDF."""
    from matplotlib.backends.backend_pdf import PdfPages

    with PdfPages(path, metadata=metadata) as pdf:
        for fig in figures:
            pdf.savefig(fig)


def save_pages_png(figures, path, dpi, metadata) -> None:
    """The figures stacked top to bottom in one PNG (so the PNG holds what the PDF holds)."""
    import io

    import matplotlib.image as mpimg
    from matplotlib.figure import Figure

    if len(figures) == 1:
        figures[0].savefig(path, format="png", dpi=dpi, metadata=metadata)
        return
    pages = []
    for fig in figures:
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=dpi)
        buf.seek(0)
        pages.append(mpimg.imread(buf, format="png"))
    width = max(p.shape[1] for p in pages)
    stacked = np.concatenate([np.pad(p, ((0, 0), (0, width - p.shape[1]), (0, 0)), constant_values=1.0)
                              for p in pages])
    h, w = stacked.shape[:2]
    out = Figure(figsize=(w / dpi, h / dpi), dpi=dpi)
    out.figimage(stacked, 0, 0)
    out.savefig(path, format="png", dpi=dpi, metadata=metadata)
