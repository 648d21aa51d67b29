"""Write the model card (MODEL.md beside the model file) from the model's metadata and the evaluation summary.

    python benchmarks/model_card.py MODEL.safetensors [--summary docs/evaluation/summary.json]
        [--refiner FILE] [--refined test1=DIR test2=DIR]

With a second stage beside the model (MODEL.refiner.safetensors, run by default) the card gains
its section: the refiner's file, training and two-stage calibration, its held-out figures against
the first stage, and the test rows (accuracy, flags, "90 %" region coverage) of `evaluate --out DIR`
(DIR/metrics.json) given with --refined, beside those of `evaluate --refine none` given with --first.
"""

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import json  # noqa: E402

from CephLandmarksLib.store.modelfile import atomic_write, load_model  # noqa: E402
from CephLandmarksLib.store.refinerfile import load_refiner  # noqa: E402
from CephLandmarksLib.store.registry import refiner_beside  # noqa: E402
from CephLandmarksLib.training.metrics import ECE_DEFINITION  # noqa: E402
from CephLandmarksLib.uncertainty.measures import LARGE_ERROR_MM  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def training_stages(training: dict) -> list:
    """The chain of runs that made the model, first to last (a fine-tuned model records its start)."""
    chain, init = [], training.get("init_model")
    while init:
        cfg = init.get("config") or {}
        chain.insert(0, {"epochs": f"{cfg.get('epochs', '?')} epochs run, weights of epoch {init.get('epochs_run')} "
                                   "kept (best validation MRE)", "config": cfg,
                         "seconds": init.get("train_seconds") or 0, "note": f" ({init.get('name')})"})
        init = init.get("init_model")
    hist = training.get("history", [])
    chain.append({"epochs": f"{len(hist) or training.get('epochs_run')} epochs run, weights of epoch "
                            f"{training.get('best_epoch')} kept (best validation MRE)",
                  "config": training.get("config", {}), "seconds": sum(r.get("seconds", 0) for r in hist),
                  "note": " (fine-tuning the stage before)" if chain else ""})
    return chain


def augment_text(aug: dict) -> str:
    """The augmentation settings in a line; the switched-off extras are left out."""
    off = {k.removesuffix("_p") for k, v in aug.items() if k.endswith("_p") and not v}
    return ", ".join(f"{k} {v}" for k, v in aug.items() if k.split("_")[0] not in off) or "none"


def regions_row(info) -> list:
    """The credible regions' row: how their masses were fitted (none when the model has no conformal masses)."""
    masses, regions = info.region_masses or {}, (info.calibration or {}).get("regions", {})
    if not masses:
        return []
    held = regions.get("nominal_coverage_90_percent")
    return [f"| credible regions | split-conformal per landmark on the same {len(regions.get('images', []))} held-out "
            f"images, through the detect path: the \"50 %\" region holds {min(masses['50']):.3f}–"
            f"{max(masses['50']):.3f} of a landmark's heatmap, the \"90 %\" region {min(masses['90']):.3f}–"
            f"{max(masses['90']):.3f}" + ("" if held is None else f" (the nominal 90 % regions held the truth "
                                          f"{held:.0f} % of the time there)") + " |"]


def second_stage_lines(path: Path, summary: dict, refined: dict, first: dict | None = None) -> list:
    """The refiner's section: file, training, held-out first vs both stages, and the test rows of
    `evaluate` beside the first stage's (`evaluate --refine none` folders in `first`, else the summary's)."""
    first = first or {}
    if not path.is_file():
        return []
    r = load_refiner(path)
    tr, res = r.info.training, r.info.training.get("holdout_result", {})
    cal = r.info.calibration
    lines = ["", "## Second stage (runs when its refiner file lies beside this model; not in git: docs/models.md)", "",
             "| | |", "|---|---|",
             f"| file | `{path.name}`, sha256 `{r.sha256}`, float16, {path.stat().st_size / 1e6:.1f} MB |",
             f"| network | {tr.get('parameters', 0) / 1e6:.1f} M parameters, one FiLM U-Net for all landmarks; "
             f"{r.info.crop_size} × {r.info.crop_size} crops of {r.info.crop_mm_per_px} mm a pixel around the "
             "first stage's points |",
             f"| training | {tr.get('config', {}).get('epochs')} epochs run, weights of epoch {tr.get('best_epoch')} "
             f"kept; {tr.get('train_seconds_this_run', 0) / 3600:.1f} h on 2 CPU cores; the base model's "
             f"{len(tr.get('holdout_ids', []))} held-out images never trained on |",
             f"| held out (those images) | MRE {res.get('coarse_mre_mm', 0):.3f} mm first stage → "
             f"{res.get('combined_mre_mm', 0):.3f} mm both stages; SDR 2 mm {res.get('sdr2_coarse_percent', 0):.1f} → "
             f"{res.get('sdr2_combined_percent', 0):.1f} %; {res.get('refined_percent', 0):.0f} % of points refined |"]
    if cal:
        lines.append(f"| two-stage calibration (those images, combined map) | flag ERE > "
                     f"{r.info.ere_threshold_mm:.2f} mm "
                     f"({cal.get('threshold_rule')}; first stage {cal.get('first_stage_threshold_mm'):.2f} mm), "
                     f"{cal.get('holdout_flagged_percent', 0):.0f} % of points flagged there; split-conformal region "
                     f"masses per landmark |")
    if refined:
        lines += ["", "| mean of doctors | stages | MRE (mm) | SDR 2 mm | 2.5 | 3 | 4 mm | AUC ERE > 4 mm | "
                  "flagged | errors > 4 mm flagged | \"90 %\" regions hold the truth |",
                  "|---|---|---|---|---|---|---|---|---|---|---|"]
        for split, folder in refined.items():
            rows = [("first", first.get(split) and json.loads((Path(first[split]) / "metrics.json").read_text())
                     or summary.get(split, {}).get("mean")),
                    ("both", json.loads((Path(folder) / "metrics.json").read_text()))]
            for stages, m in rows:
                if m:
                    cover = m.get("region_coverage_percent", {}).get("90")
                    lines.append(f"| {split} | {stages} | {m['mre_mm']:.3f} | {m['sdr']['2.0']:.1f} | "
                                 f"{m['sdr']['2.5']:.1f} | {m['sdr']['3.0']:.1f} | {m['sdr']['4.0']:.1f} | "
                                 f"{m['roc_auc_4mm']:.3f} | {m['flagged_percent']:.0f} % | "
                                 f"{100 * m['flagged_share_of_errors_over_4mm']:.0f} % | "
                                 f"{'' if cover is None else f'{cover:.1f} %'} |")
    return lines


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("model")
    ap.add_argument("--summary", default=str(ROOT / "docs" / "evaluation" / "summary.json"))
    ap.add_argument("--refiner", help="the second stage (default: MODEL.refiner.safetensors beside the model)")
    ap.add_argument("--refined", nargs="*", default=[], metavar="SPLIT=DIR",
                    help="evaluate output folders (two stages), e.g. test1=runs/refine-test1")
    ap.add_argument("--first", nargs="*", default=[], metavar="SPLIT=DIR",
                    help="evaluate --refine none output folders (first stage), e.g. test1=runs/first-test1")
    a = ap.parse_args()
    m = load_model(a.model)
    info, tr, cal = m.info, m.info.training, m.info.calibration
    cfg = tr.get("config", {})
    stages = training_stages(tr)
    seconds_all = sum(st["seconds"] for st in stages)
    summary = json.loads(Path(a.summary).read_text()) if Path(a.summary).is_file() else {}
    names = info.landmark_abbreviations
    lines = [
        f"# Model card: {Path(a.model).name}",
        "",
        "Cephalometric landmark detector (19 ISBI 2015 landmarks), contour-hugging heatmaps "
        "(McCouat & Voiculescu, CVPR 2022), with per-landmark temperature scaling, an ERE flag threshold, "
        "and the probability of an error over "
        f"{LARGE_ERROR_MM:g} mm read from each heatmap.",
        "",
        "**Licence of the training data: ISBI 2015 (Wang et al., Medical Image Analysis 2016) is for "
        "non-commercial research use; so is this model. Not a medical device.**",
        "",
        "| | |",
        "|---|---|",
        f"| file | `{Path(a.model).name}`, sha256 `{m.sha256}`, weights {'float16' if m.half else 'float32'} |",
        f"| data | ISBI 2015 TrainingData 001–150, ground truth = mean of the two doctors "
        f"({cfg.get('ground_truth', 'mean')}); {len(tr.get('holdout_ids', []))} images held out for validation, "
        f"calibration and the flag threshold: {', '.join(tr.get('holdout_ids', []))} |",
        "| test data | Test1 (151–300) and Test2 (301–400), used for reporting only |",
        f"| input | {info.input_size[0]} × {info.input_size[1]} (width × height) model pixels of "
        f"{info.model_mm_per_px or 0:.4f} mm; an image of known spacing is resampled to that scale and centred, "
        "one of unknown spacing is fitted to the width |",
        "| initialisation | " + ("ImageNet ResNet-34" if stages[0]["config"].get("imagenet")
                                 else "random (no ImageNet weights available offline)") + " |",
        *[f"| training, stage {k + 1}{st['note']} | {st['epochs']}, batch {st['config'].get('batch_size')}, "
          f"Adam peak lr {st['config'].get('lr')} with warm-up and cosine decay, bf16 autocast "
          f"{'on' if st['config'].get('bf16') else 'off'}, "
          f"augmentation: {augment_text(st['config'].get('augment', {}))}; "
          f"{st['seconds'] / 3600:.1f} h |" for k, st in enumerate(stages)],
        f"| training time / hardware | {seconds_all / 3600:.1f} h of epochs in all on {tr.get('hardware')} "
        "(2 CPU cores, no GPU) |",
        f"| temperatures | {', '.join(f'{n} {t:.2f}' for n, t in zip(names, info.temperatures, strict=True))} |",
        f"| calibration (holdout) | NLL {cal.get('nll_before', 0):.3f} → {cal.get('nll_after', 0):.3f}; "
        f"ECE {cal.get('ece_before', 0):.2f} % → {cal.get('ece_after', 0):.2f} %; "
        f"holdout MRE {cal.get('holdout_mre_mm', 0):.2f} mm |",
        *regions_row(info),
        f"| ERE threshold | {info.ere_threshold_mm:.2f} mm ({cal.get('threshold_rule', '')}); "
        f"{cal.get('holdout_flagged_percent', 0):.1f} % of holdout points flagged |",
    ]
    if summary:
        lines += ["", "## Test results (mean of doctors; senior only in brackets)", "",
                  "What `ceph-landmarks detect` produces: `evaluate` runs detect's predictor (resampled and centred "
                  "canvas, orientation check, aligned second pass, the second stage when its refiner lies beside "
                  "the model, the flag rule).", "",
                  "| | MRE (mm) | SDR 2 mm | 2.5 | 3 | 4 mm | ECE before → after (%) | AUC ERE > 4 mm "
                  f"| AUC P(error > {LARGE_ERROR_MM:g} mm) | flagged: all / errors > 4 mm / points ≤ 2 mm |",
                  "|---|---|---|---|---|---|---|---|---|---|"]
        for split, s in summary.items():
            mn, sn = s["mean"], s["senior"]
            lines.append(
                f"| {split} | {mn['mre_mm']:.3f} ({sn['mre_mm']:.3f}) | "
                f"{mn['sdr']['2.0']:.1f} ({sn['sdr']['2.0']:.1f}) | "
                f"{mn['sdr']['2.5']:.1f} | {mn['sdr']['3.0']:.1f} | {mn['sdr']['4.0']:.1f} | "
                f"{mn['ece_uncalibrated']:.2f} → {mn['ece']:.2f} | {mn['roc_auc_4mm']:.3f} | "
                f"{mn['p_large_error_roc_auc_4mm']:.3f} | {mn['flagged_percent']:.1f} / "
                f"{100 * mn['flagged_share_of_errors_over_4mm']:.1f} / "
                f"{100 * mn['flagged_share_of_points_under_2mm']:.1f} % |")
        lines += ["", ECE_DEFINITION, "", "Full report: [docs/evaluation/REPORT.md](../../docs/evaluation/REPORT.md)."]
    refiner = Path(a.refiner) if a.refiner else refiner_beside(a.model)
    lines += second_stage_lines(refiner, summary, dict(r.split("=", 1) for r in a.refined),
                                dict(r.split("=", 1) for r in a.first))
    lines += ["", "## Intended use and limits", "",
              "- Lateral cephalograms like ISBI 2015 (right-facing, whole skull in view). Other framings, "
              "scales and exposures: see docs/robustness.md.",
              f"- Every point has an ERE and a probability of an error over {LARGE_ERROR_MM:g} mm; flagged points "
              "must be reviewed. Unflagged points can still be wrong.",
              ""]
    out = Path(a.model).with_suffix(".md")
    atomic_write(out, lambda p: Path(p).write_text("\n".join(lines)))
    print(out)


if __name__ == "__main__":
    main()
