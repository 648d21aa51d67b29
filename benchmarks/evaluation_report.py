"""Regenerate the evaluation report of a model on ISBI 2015 Test1 and Test2.

    python benchmarks/evaluation_report.py [--model M] [--dataset ../shared/data/isbi2015] [--out docs/evaluation]
                                          [--reuse]

The figures are those of `ceph-landmarks evaluate`, which runs detect's predictor (evaluate.py).
--reuse takes OUT/{test1,test2}/metrics.json and predictions.npz as they are when this model's
evaluate wrote them (same SHA-256, detect's predictor) instead of running evaluate again.
Writes OUT/REPORT.md (headline and per-landmark tables, mean-of-doctors and senior
ground truth), OUT/{test1,test2}/ (metrics.json, reliability.png, ere_vs_error.png,
roc.png) and OUT/overlays/ (best, median and worst image of each split).  The overlays
show ISBI images, so they are git-ignored: they are derived data and stay local.
"""

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from CephLandmarksLib.annotations.datasets import load_dataset  # noqa: E402
from CephLandmarksLib.cli import default_model_path  # noqa: E402
from CephLandmarksLib.detection.predictor import LandmarkDetector  # noqa: E402
from CephLandmarksLib.detection.result import LEFT_FACING  # noqa: E402
from CephLandmarksLib.imaging.images import read_radiograph  # noqa: E402
from CephLandmarksLib.outputs.plots import render_overlay  # noqa: E402
from CephLandmarksLib.store.modelfile import atomic_write  # noqa: E402
from CephLandmarksLib.store.refinerfile import load_refiner  # noqa: E402
from CephLandmarksLib.store.registry import default_refiner  # noqa: E402
from CephLandmarksLib.training.evaluate import P_LARGE_BIN_EDGES, evaluate  # noqa: E402
from CephLandmarksLib.training.metrics import (  # noqa: E402
    ECE_DEFINITION,
    radial_errors_mm,
    summarise,
)
from CephLandmarksLib.uncertainty.measures import LARGE_ERROR_MM  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
REASONS = ("uncertain", "missing", "implausible", "near_edge")


def senior_metrics(dataset, split, predictions, names):
    samples = load_dataset(dataset, split, "senior")
    by_id = {s.id: s for s in samples}
    true = np.stack([by_id[str(i)].landmarks_px for i in predictions["ids"]])
    errors = radial_errors_mm(predictions["pred_px"], true, (0.1, 0.1))
    return summarise(np.where(np.isnan(errors), np.inf, errors), names)  # a missing point is a miss, as in evaluate


def evaluation(model, sha256, dataset, split, out, reuse, refiner=None):
    """evaluate's metrics for a split: reused from out/split when --reuse and this model's evaluate wrote
    them, with the same second stage (or none)."""
    metrics, npz = out / split / "metrics.json", out / split / "predictions.npz"
    if reuse and metrics.is_file() and npz.is_file():
        m = json.loads(metrics.read_text())
        same_stage = m.get("refiner", {}).get("sha256") == (refiner.sha256 if refiner else None)
        if m.get("model", {}).get("sha256") == sha256 and "predictor" in m and same_stage:
            print(f"{split}: reusing {metrics}", flush=True)
            return m
    return evaluate(model, dataset, split, out / split, log=lambda *_: None, refiner=refiner)


def fmt_sdr(s):
    return " | ".join(f"{s[k]:.1f}" for k in ("2.0", "2.5", "3.0", "4.0"))


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model")
    ap.add_argument("--dataset", default=str(ROOT.parent / "shared" / "data" / "isbi2015"))
    ap.add_argument("--out", default=str(ROOT / "docs" / "evaluation"))
    ap.add_argument("--refine", help="the second stage: a refiner file, or 'none' (default: the refiner beside the "
                                     "model, as detect runs it)")
    ap.add_argument("--reuse", action="store_true",
                    help="reuse OUT/SPLIT/metrics.json and predictions.npz that this model's evaluate wrote")
    a = ap.parse_args()
    model = Path(a.model or default_model_path())
    out = Path(a.out)
    refiner_path = default_refiner(model) if a.refine is None else None if a.refine == "none" else Path(a.refine)
    refiner = load_refiner(refiner_path) if refiner_path else None
    det = LandmarkDetector(model, refiner=refiner)
    names = det.info.landmark_names
    results = {}
    for split in ("test1", "test2"):
        m = evaluation(model, det.model.sha256, a.dataset, split, out, a.reuse, refiner)
        pred = np.load(out / split / "predictions.npz")
        results[split] = (m, senior_metrics(a.dataset, split, pred, names))
        # Overlays of the best, median and worst image (local only: derived from ISBI images).
        per_image = sorted(m["per_image_mre_mm"].items(), key=lambda kv: kv[1])
        picks = {"best": per_image[0], "median": per_image[len(per_image) // 2], "worst": per_image[-1]}
        samples = {s.id: s for s in load_dataset(a.dataset, split)}
        for label, (image_id, _) in picks.items():
            rad = read_radiograph(samples[image_id].image_path)
            target = out / "overlays" / f"{split}_{label}_{image_id}.png"
            atomic_write(target, lambda p, rad=rad: render_overlay(rad.pixels, det.detect(rad), p))
        print(f"{split}: MRE {m['mre_mm']:.3f} mm, SDR2 {m['sdr']['2.0']:.1f} %, ECE {m['ece_uncalibrated']:.2f} -> "
              f"{m['ece']:.2f} %, AUC4 ERE {m['roc_auc_4mm']:.3f}, P {m['p_large_error_roc_auc_4mm']:.3f}", flush=True)

    info = det.info
    lines = [
        f"# Evaluation of `{model.name}` on ISBI 2015",
        "",
        "Regenerate: `python benchmarks/evaluation_report.py "
        f"--model {model.relative_to(ROOT) if model.is_relative_to(ROOT) else model}`.",
        f"Model: input {info.input_size[0]} x {info.input_size[1]}, sha256 `{det.model.sha256[:16]}…`, "
        f"flag rule {det.settings.flag_rule()} (fitted on the training holdout"
        + (f"; with the second stage `{Path(refiner.path).name}`, sha256 `{refiner.sha256[:16]}…`, on its combined "
           "map" if refiner else "; first stage alone") + "). "
        "Nothing here was used to choose anything: Test1 and Test2 are for reporting only.",
        "",
        "Predictor: what `ceph-landmarks detect` produces. `evaluate` reads each image with its spacing and runs "
        "`LandmarkDetector.observe` (the image resampled to the model's own mm per pixel, the orientation check, an "
        "aligned second pass when it helps" + (", the second stage on full-resolution crops" if refiner else "")
        + ") and `decide` with the detector's settings; the points, ERE, P(error > 4 mm), flags and \"90 %\" "
        "regions are decide's. ECE and the refinement table read the coarse maps of the pass detect kept. "
        "A point reported missing counts as a miss (outside every SDR radius; MRE over the points given). "
        + "; ".join(f"{split}: {sum(m['passes']['orientation'].values())} images, "
                    f"{m['passes']['orientation'].get(LEFT_FACING, 0)} read mirrored, "
                    f"{m['passes']['aligned_images']} with an aligned second pass, "
                    f"{m.get('n_missing_points', 0)} points missing" for split, (m, _) in results.items()) + ".",
        "",
        "## Headline (ground truth: mean of the two doctors)",
        "",
        "| | MRE (mm) | SD | SDR 2 | 2.5 | 3 | 4 mm (%) | ECE before → after (%) | AUC ERE, err > 2 mm | > 4 mm "
        f"| AUC P(error > {LARGE_ERROR_MM:g} mm), err > 4 mm | Pearson r ERE (groups of 36) | flagged (%) "
        "| \"90 %\" regions hold the truth (%) |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for split, (m, _) in results.items():
        lines.append(
            f"| {split} | {m['mre_mm']:.3f} | {m['mre_std_mm']:.2f} | {fmt_sdr(m['sdr'])} | "
            f"{m['ece_uncalibrated']:.2f} → {m['ece']:.2f} | {m['roc_auc_2mm']:.3f} | {m['roc_auc_4mm']:.3f} | "
            f"{m['p_large_error_roc_auc_4mm']:.3f} | {m['ere_error_pearson']:.3f} | {m['flagged_percent']:.1f} | "
            f"{m.get('region_coverage_percent', {}).get('90', float('nan')):.1f} |"
        )
    lines += ["", ECE_DEFINITION + " With 10 uniform bins on [0, 1] instead: " + "; ".join(
                  f"{split} {m['ece_uniform_bins_before_after'][0]:.2f} → {m['ece_uniform_bins_before_after'][1]:.2f} %"
                  for split, (m, _) in results.items()) + "."]
    lines += ["", "Senior doctor only (the challenge's own ground truth):", "",
              "| | MRE (mm) | SDR 2 | 2.5 | 3 | 4 mm (%) |", "|---|---|---|---|---|---|"]
    for split, (_, s) in results.items():
        lines.append(f"| {split} | {s['mre_mm']:.3f} | {fmt_sdr(s['sdr'])} |")
    lines += ["", "Sub-pixel refinement (MRE in mm by window radius; 0 = plain argmax; the model uses "
              f"{info.refine_radius}, fixed before testing):", "", "| | r = 0 | r = 1 | r = 2 |", "|---|---|---|---|"]
    for split, (m, _) in results.items():
        r = m["mre_mm_by_refine_radius"]
        lines.append(f"| {split} | {r['0']:.3f} | {r['1']:.3f} | {r['2']:.3f} |")
    rule = next(iter(results.values()))[0].get("flag_rule", f"ERE > {info.ere_threshold_mm:.2f} mm")
    lines += ["", f"Flags (the model's rule, as detect flags: {rule}, or missing, implausible or near the edge): share "
              "of errors > 4 mm that are flagged, of points within 2 mm that are flagged, and of all points flagged "
              "for each reason (a point may have several):", "",
              "| | errors > 4 mm flagged | points ≤ 2 mm flagged | " + " | ".join(REASONS) + " |",
              "|---|---|---|" + "---|" * len(REASONS)]
    for split, (m, _) in results.items():
        by = m.get("flagged_by_reason_percent", {})
        lines.append(f"| {split} | {100 * (m['flagged_share_of_errors_over_4mm'] or 0):.1f} % | "
                     f"{100 * m['flagged_share_of_points_under_2mm']:.1f} % | "
                     + " | ".join(f"{by.get(r, 0):.1f} %" for r in REASONS) + " |")
    lines += ["", f"Probability of an error over {LARGE_ERROR_MM:g} mm (`p_large_error`), as given and as observed "
              "(points per bin in brackets):", "",
              "| | " + " | ".join(f"{a:g}–{b:g}"
                                  for a, b in zip(P_LARGE_BIN_EDGES[:-1], P_LARGE_BIN_EDGES[1:], strict=True)) + " |",
              "|---|" + "---|" * (len(P_LARGE_BIN_EDGES) - 1)]
    for split, (m, _) in results.items():
        r = m["p_large_error_reliability"]
        lines.append(f"| {split} | " + " | ".join(
            f"{100 * c:.2g} % → {100 * a:.2g} % ({n})" if n else "–"
            for c, a, n in zip(r["confidence"], r["accuracy"], r["counts"], strict=True)) + " |")
    for split, (m, s) in results.items():
        lines += ["", f"## {split}: per landmark", "",
                  "| # | landmark | MRE (mm) | SD | SDR 2 | 2.5 | 3 | 4 mm (%) | MRE senior |",
                  "|---|---|---|---|---|---|---|---|---|"]
        for p, q in zip(m["per_landmark"], s["per_landmark"], strict=True):
            lines.append(f"| {p['index']} | {p['name']} | {p['mre_mm']:.2f} | {p['std_mm']:.2f} | "
                         f"{fmt_sdr(p['sdr'])} | {q['mre_mm']:.2f} |")
        lines += ["", f"![reliability {split}]({split}/reliability.png)", "",
                  f"![ERE vs error {split}]({split}/ere_vs_error.png) ![ROC {split}]({split}/roc.png)"]
    lines += ["", "Overlays of the best, median and worst image of each split are written to `overlays/` "
              "when the report is regenerated; they are not committed, being pictures of the ISBI images.", ""]
    atomic_write(out / "REPORT.md", lambda p: Path(p).write_text("\n".join(lines)))
    atomic_write(out / "summary.json", lambda p: Path(p).write_text(json.dumps(
        {k: {"mean": {x: v[0][x] for x in ("mre_mm", "sdr", "ece", "ece_uncalibrated", "roc_auc_2mm", "roc_auc_4mm",
                                            "p_large_error_roc_auc_4mm", "ere_error_pearson",
                                            "flagged_percent", "flagged_share_of_errors_over_4mm",
                                            "flagged_share_of_points_under_2mm", "mre_mm_by_refine_radius",
                                            "n_missing_points", "flagged_by_reason_percent", "passes", "predictor",
                                            "region_coverage_percent", "flag_rule") if x in v[0]},
                 **({"refiner": v[0]["refiner"]} if "refiner" in v[0] else {}),
             "senior": {"mre_mm": v[1]["mre_mm"], "sdr": v[1]["sdr"]}} for k, v in results.items()}, indent=2)))
    print(out / "REPORT.md")


if __name__ == "__main__":
    main()
