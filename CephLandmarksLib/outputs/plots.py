"""Pictures (matplotlib, Agg): detection overlay, reliability diagram, ERE scatter, ROC."""

import numpy as np

from ..files import OUTPUT_TAG
from ..uncertainty.regions import RING_LEVEL, localised, region_caption
from .tracing import detection_lines, draw_lines, tracing_caption

PNG_METADATA = {"Software": f"{OUTPUT_TAG} (matplotlib)"}  # how a later run recognises the file as ours
CAPTION_PT = 8  # the overlay caption's font size
CAPTION_LINE_IN = 0.17  # inches per caption line
CAPTION_CHAR_IN = 0.6 * CAPTION_PT / 72  # a generous mean character width at that size, to wrap the caption


def _figure(w_in, h_in):
    from matplotlib.figure import Figure

    return Figure(figsize=(w_in, h_in), dpi=100)


def _flag_colour(fraction):
    """Green (confident) through yellow to red at and above the flag threshold (fraction 1)."""
    import matplotlib

    t = float(np.clip(np.nan_to_num(fraction, nan=1.0), 0, 1))
    return matplotlib.colormaps["RdYlGn_r"](0.1 + 0.85 * t)


def _overlay_caption(detection, width_in: float) -> list:
    """[(text, colour)] lines under the overlay, wrapped to its width: a long flag rule (an adapted
    model's) or a narrow image must not run off the picture."""
    import textwrap

    from ..detection.missing import NEAR_EDGE_MM

    chars = max(30, int(0.96 * width_in / CAPTION_CHAR_IN))
    lines = []
    missing = [lm.abbreviation for lm in detection.landmarks if lm.missing]
    if missing:
        lines += [(t, "red") for t in textwrap.wrap(f"Outside the image (missing): {', '.join(missing)}", chars)]
    n_flag = sum(lm.flagged for lm in detection.landmarks)
    regions = region_caption(detection.landmarks)  # regions not drawn, fragments left out
    text = (f"{n_flag} of {len(detection.landmarks)} points flagged, ringed red ({detection.flag_rule_text()}, "
            f"missing, implausible or within {NEAR_EDGE_MM:g} mm of the edge). "
            f"Contours: 50 % solid, 90 % dashed. {regions + ' ' if regions else ''}"
            f"Spacing {detection.spacing_mm[0]:.3g} mm ({detection.spacing_source}).")
    text = f"{tracing_caption(detection)} {text}".strip()
    return lines + [(t, "black") for t in textwrap.wrap(text, chars)]


def _not_localised_mark(ax, x, y, colour, height_px):
    """A dashed ring marked "?" around a point whose "90 %" region is not localised (not drawn)."""
    from matplotlib import patheffects
    from matplotlib.patches import Circle

    r = 0.028 * height_px
    ax.add_patch(Circle((x, y), r, fill=False, ls=(0, (4, 3)), ec=colour, lw=1.8,
                        path_effects=[patheffects.withStroke(linewidth=3, foreground="black")]))
    ax.annotate("?", (x - 0.7 * r, y - 0.7 * r), ha="right", va="bottom", fontsize=13, color=colour, weight="bold",
                path_effects=[patheffects.withStroke(linewidth=2.5, foreground="black")])


def overlay_figure(pixels: np.ndarray, detection, max_height_px: int = 1200, labels: bool = True):
    """The radiograph with each landmark coloured by its flag score (ERE, or an adapted model's
    P(error > 4 mm)) up to the flag threshold, flagged ones ringed in red, the 50 % (solid) and
    90 % (dashed) credible-region contours, and a caption under it (a matplotlib Figure)."""
    from matplotlib import patheffects

    from ..imaging.images import normalise

    h, w = pixels.shape
    step = max(1, int(np.ceil(h / max_height_px)))
    shown = normalise(pixels[::step, ::step])
    scale = 1.0 / step
    width_in = shown.shape[1] / 100
    caption = _overlay_caption(detection, width_in)
    caption_in = CAPTION_LINE_IN * (len(caption) + 0.6)
    height_in = shown.shape[0] / 100 + caption_in
    fig = _figure(width_in, height_in)
    ax = fig.add_axes((0, caption_in / height_in, 1, 1 - caption_in / height_in))
    ax.imshow(shown, cmap="gray", vmin=0, vmax=1, interpolation="bilinear")
    draw_lines(ax, detection_lines(detection), scale, labels)  # the analyses' tracing, under the points
    for lm, fraction in zip(detection.landmarks, detection.flag_fractions(), strict=True):
        if lm.missing:  # outside the image: named in the caption, not drawn
            continue
        colour = _flag_colour(fraction)
        far = not localised(lm.region_90_area_mm2)  # its "90 %" region says "anywhere" (regions.py)
        for key, style in (("50", "-"), ("90", "--")):
            for line in [] if far and key == RING_LEVEL else lm.contours_px.get(key, []):
                ax.plot((line[:, 0] + 0.5) * scale - 0.5, (line[:, 1] + 0.5) * scale - 0.5, style, color=colour, lw=1.0)
        x, y = (lm.x_px + 0.5) * scale - 0.5, (lm.y_px + 0.5) * scale - 0.5
        if far:  # not drawn as contours: a dashed ring marked "?"
            _not_localised_mark(ax, x, y, colour, shown.shape[0])
        ax.plot(x, y, "o", ms=5, mfc=colour, mec="black", mew=0.6)
        if lm.flagged:
            ax.plot(x, y, "o", ms=13, mfc="none", mec="red", mew=1.8)
        if labels:
            ax.annotate(lm.abbreviation, (x, y), xytext=(6, -6), textcoords="offset points", fontsize=8,
                        color="red" if lm.flagged else "white", weight="bold",
                        path_effects=[patheffects.withStroke(linewidth=2, foreground="black")])
    ax.set_xlim(-0.5, shown.shape[1] - 0.5)
    ax.set_ylim(shown.shape[0] - 0.5, -0.5)
    ax.axis("off")
    for k, (text, colour) in enumerate(caption):
        y_in = CAPTION_LINE_IN * (len(caption) - k - 0.7)
        fig.text(0.01, y_in / height_in, text, fontsize=CAPTION_PT, color=colour)
    return fig


def render_overlay(pixels: np.ndarray, detection, path, max_height_px: int = 1200, labels: bool = True):
    """overlay_figure, written as a PNG to `path`."""
    overlay_figure(pixels, detection, max_height_px, labels).savefig(path, format="png", facecolor="white",
                                                                      metadata=PNG_METADATA)


def reliability_diagram(before: dict, after: dict, path, title=""):
    """Two reliability diagrams (bins of confidence vs the share of correct predictions).

    Drawn as the paper's code draws them: bars of equal width over the bins below 0.15, the
    open last bin (all confidences above its lower edge) drawn in the last slot.
    """
    fig = _figure(10, 4.6)
    for k, (res, name) in enumerate(((before, "before calibration"), (after, "after calibration"))):
        ax = fig.add_subplot(1, 2, k + 1)
        edges = np.asarray(res["edges"])
        acc, conf, counts = (np.asarray(res[key]) for key in ("accuracy", "confidence", "counts"))
        x_max = edges[-2] + (edges[-2] - edges[-3]) if edges[-1] > 2 * edges[-2] else edges[-1]
        left = edges[:-1]
        width = np.minimum(np.diff(edges), x_max - left)
        keep = counts > 0
        ax.bar(left[keep], acc[keep], width=width[keep] * 0.95, align="edge", color="#4477aa", edgecolor="black",
               label="accuracy")
        ax.bar(left[keep], conf[keep] - acc[keep], bottom=acc[keep], width=width[keep] * 0.95, align="edge",
               color="#ee6677", alpha=0.5, edgecolor="#aa3344", label="gap to mean confidence")
        for x, c in zip(left[keep] + width[keep] / 2, counts[keep], strict=True):
            ax.text(x, 0.01 * x_max, str(c), ha="center", va="bottom", fontsize=6, color="white")
        ax.plot([0, x_max], [0, x_max], "k--", lw=1)
        ax.set_xlim(0, x_max)
        ax.set_ylim(0, max(2 * x_max, 1.05 * float(np.max(np.r_[acc, conf]))))
        ax.set_xlabel("confidence (heatmap maximum)"
                      + (f"; last bin: all > {edges[-2]:g}" if x_max < edges[-1] else ""))
        ax.set_ylabel("accuracy (argmax within a pixel of the truth)")
        ax.set_title(f"{name}: ECE {res['ece']:.2f} %")
        ax.legend(loc="upper left", fontsize=8)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, format="png", metadata=PNG_METADATA)


def ere_scatter(ere_mm, error_mm, group_means, pearson_r, path, title=""):
    """ERE against the true error (points with a non-finite value are left out)."""
    ere_mm, error_mm = np.asarray(ere_mm, dtype=float), np.asarray(error_mm, dtype=float)
    keep = np.isfinite(ere_mm) & np.isfinite(error_mm)
    ere_mm, error_mm = ere_mm[keep], error_mm[keep]
    group_means = np.asarray(group_means, dtype=float).reshape(-1, 2)
    group_means = group_means[np.isfinite(group_means).all(axis=1)]
    fig = _figure(6, 5)
    ax = fig.add_subplot(1, 1, 1)
    ax.scatter(ere_mm, error_mm, s=4, alpha=0.25, color="#888888", label="landmarks")
    ax.scatter(group_means[:, 0], group_means[:, 1], s=18, color="#cc3311",
               label=f"groups of 36 sorted by ERE (r = {pearson_r:.2f})")
    both = np.concatenate([ere_mm, error_mm])
    lim = float(np.percentile(both, 99.5)) * 1.05 if both.size else 1.0
    lim = lim if lim > 0 else 1.0
    ax.plot([0, lim], [0, lim], "k--", lw=1)
    ax.set_xlim(0, lim)
    ax.set_ylim(0, lim)
    ax.set_xlabel("expected radial error (mm)")
    ax.set_ylabel("true radial error (mm)")
    ax.set_title(title or "ERE against the true error")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, format="png", metadata=PNG_METADATA)


def roc_plot(curves: dict, path, title=""):
    """curves: {label: {"fpr", "tpr", "auc", "threshold_point": (fpr, tpr, text) or None, "ls": "-"}}"""
    fig = _figure(5.5, 5)
    ax = fig.add_subplot(1, 1, 1)
    written = set()
    for label, c in curves.items():
        ax.plot(c["fpr"], c["tpr"], lw=1.6, ls=c.get("ls", "-"), label=f"{label}: AUC {c['auc']:.3f}")
        if c.get("threshold_point"):
            f, t, text = c["threshold_point"]
            ax.plot(f, t, "o", color="black")
            if text not in written:  # the same threshold on several curves: named once
                ax.annotate(text, (f, t), xytext=(8, 6), textcoords="offset points", fontsize=8)
                written.add(text)
    ax.plot([0, 1], [0, 1], "k:", lw=1)
    ax.set_xlabel("false positive rate")
    ax.set_ylabel("true positive rate")
    ax.set_title(title or "ROC of the uncertainty scores for erroneous landmarks")
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, format="png", metadata=PNG_METADATA)
