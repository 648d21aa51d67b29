"""The clinic adaptation report: markdown with two PNGs, written next to the adapted model.

Every "after" figure is cross-validated within the clinic's images (adaptation.py); "before"
is the base model on the same images.
"""

from pathlib import Path

import numpy as np

from ..files import atomic_write

COLUMNS = (("mre_mm", "MRE mm", "{:.2f}"), ("sdr_2mm_percent", "SDR 2 mm %", "{:.0f}"),
           ("coverage_50_percent", "50 % region holds truth %", "{:.0f}"),
           ("coverage_90_percent", "90 % region holds truth %", "{:.0f}"), ("flagged_percent", "flagged %", "{:.0f}"))


def _num(value, fmt) -> str:
    """A figure, or a dash where there is none (e.g. no error over 4 mm to catch)."""
    return "–" if value is None or not np.isfinite(value) else fmt.format(value)


def _pair(before, after, fmt) -> str:
    return f"{_num(before, fmt)} → {_num(after, fmt)}"


def _bars(path, names, before, after, ylabel, title, line=None):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    x = np.arange(len(names))
    fig, ax = plt.subplots(figsize=(9, 3.2), dpi=110)
    ax.bar(x - 0.2, before, 0.4, label="before (base model)", color="#999999")
    ax.bar(x + 0.2, after, 0.4, label="after (cross-validated)", color="#2a7ab9")
    if line is not None:
        ax.axhline(line, color="#c0392b", lw=1, ls="--")
    ax.set_xticks(x, names, fontsize=8)
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, format="png")
    plt.close(fig)


def write_report(folder: Path, result, record: dict, measurement_coverage: dict, names, base_name: str,
                 dataset: str) -> Path:
    """folder/report.md, folder/mre.png, folder/coverage90.png; returns the markdown's path."""
    folder = Path(folder)
    b, a = result.before, result.after
    lines = [
        f"# Clinic adaptation of {base_name}",
        "",
        f"Clinic images: {record['n_images']} from `{dataset}`. Method chosen by {record['cv_folds']}-fold "
        f"cross-validation within them: **{record['method']}** (cross-validated MRE per method: "
        + ", ".join(f"{m} {v:.3f} mm" for m, v in record["methods_cv_mre_mm"].items()) + ").",
        "",
        "\"After\" figures are cross-validated: every image is scored by settings fitted without it. "
        f"Regions: {record['region_rule']}. Flags: {record['flag_rule']}.",
        "",
    ]
    tune = record.get("fine_tune")
    if tune:
        lines += [f"Fine-tune: the {tune['trained']} retrained for {tune['epochs']} epochs (learning rate "
                  f"{tune['learning_rate']:g}) from the base weights on all {record['n_images']} images; temperatures, "
                  f"regions and flags fitted on {tune['calibrated_on']} (each image read by a fine-tune that did "
                  "not see it).", ""]
    lines += [
        "| | MRE mm | SDR 2 mm % | 50 % regions hold truth | 90 % regions hold truth | errors > 4 mm flagged "
        "| points ≤ 2 mm flagged |",
        "|---|---|---|---|---|---|---|",
    ]
    keys = ("mre_mm", "sdr_2mm_percent", "coverage_50_percent", "coverage_90_percent",
            "large_errors_flagged_percent", "good_points_flagged_percent")
    for label, f in (("before", b), ("after", a)):
        lines.append(f"| {label} | " + " | ".join(_num(f[k], "{:.2f}" if k == "mre_mm" else "{:.1f} %")
                                                 for k in keys) + " |")
    lines += ["", "## Per landmark (before → after)", "",
              "| landmark | " + " | ".join(c[1] for c in COLUMNS) + " | offset along S→N, normal (mm) |",
              "|---" * (len(COLUMNS) + 2) + "|"]
    offsets = record.get("offsets_mm")
    for j, name in enumerate(names):
        pb, pa = b["per_landmark"][j], a["per_landmark"][j]
        off = "–" if offsets is None else f"{offsets[j][0]:+.2f}, {offsets[j][1]:+.2f}"
        lines.append(f"| {name} | " + " | ".join(_pair(pb[k], pa[k], fmt) for k, _, fmt in COLUMNS) + f" | {off} |")
    lines += ["", "## Measurements: 90 % intervals holding the clinic's value (before → after)", "",
              "| measurement | coverage |", "|---|---|"]
    for key, before in measurement_coverage["before"].items():
        lines.append(f"| {key} | {_pair(before, measurement_coverage['after'].get(key), '{:.0f} %')} |")
    lines += ["", "![MRE per landmark](mre.png)", "", "![90 % region coverage per landmark](coverage90.png)", ""]

    per = lambda f, k: [p[k] for p in f["per_landmark"]]  # noqa: E731
    atomic_write(folder / "mre.png", lambda p: _bars(p, names, per(b, "mre_mm"), per(a, "mre_mm"), "MRE (mm)",
                                                     "Mean radial error per landmark on the clinic's images"))
    atomic_write(folder / "coverage90.png", lambda p: _bars(
        p, names, per(b, "coverage_90_percent"), per(a, "coverage_90_percent"), "% holding the truth",
        "\"90 %\" regions holding the clinic's point", line=90))
    md = folder / "report.md"
    atomic_write(md, lambda p: Path(p).write_text("\n".join(lines), encoding="utf-8"))
    return md
