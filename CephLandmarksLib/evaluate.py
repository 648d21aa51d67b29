"""Evaluation on an annotated split: accuracy, calibration, ERE correlation and ROC, with plots."""

from pathlib import Path

import numpy as np
import torch

from .datasets import load_dataset
from .files import atomic_write, json_text
from .heatmaps import decode_points, softmax_2d
from .metrics import ECE_DEFINITION, UNIFORM_BIN_EDGES, grouped_correlation, reliability, roc_curve, summarise
from .modelfile import load_model
from .plots import ere_scatter, reliability_diagram, roc_plot
from .prepared import Scored, prepare, prepared_logits, score_logits, subset
from .prepared import radial_errors_mm as prepared_errors_mm
from .uncertainty import LARGE_ERROR_MM

ERROR_LEVELS_MM = (2.0, 4.0)
P_LARGE_BIN_EDGES = (0.0, 0.001, 0.01, 0.05, 0.2, 1.0)  # reliability of p_large_error: most values are tiny
REFINE_RADII = (0, 1, 2)  # 0: plain argmax


def roc_summary(score, errors_mm, flagged, threshold_label=""):
    """ROC and AUC of a score for errors above each level, and the TPR/FPR of the model's flags."""
    out = {}
    for level in ERROR_LEVELS_MM:
        pos = errors_mm.ravel() > level
        fpr, tpr, thr, auc = roc_curve(score, pos)
        tp, fp = _share(flagged.ravel()[pos]), _share(flagged.ravel()[~pos])
        out[level] = {"fpr": fpr, "tpr": tpr, "auc": auc, "threshold_point": (fp, tp, threshold_label),
                      "n_positive": int(pos.sum())}
    return out


def evaluate(model_path, dataset, split, out_dir, ground_truth="mean", device="cpu", log=print) -> dict:
    """Run the model on a split; write metrics.json and the plots into out_dir; return the metrics."""
    loaded = load_model(model_path, device)
    info = loaded.info
    samples = load_dataset(dataset, split, ground_truth)
    data = prepare(samples, info.input_size, f"reading {split}")
    temps = torch.tensor(info.temperatures, dtype=torch.float32)
    # Run in chunks: logits of a whole test set do not fit in memory at full size.
    parts_raw, parts, by_radius = [], [], {r: [] for r in REFINE_RADII}
    for start in range(0, len(samples), 10):
        sub = subset(data, range(start, min(start + 10, len(samples))))
        logits = prepared_logits(loaded.net, sub, device)
        parts_raw.append(score_logits(logits, sub, None, info.refine_radius))
        parts.append(score_logits(logits, sub, temps, info.refine_radius))
        probs = softmax_2d(logits, temps)
        for r in REFINE_RADII:  # the effect of sub-pixel refinement, measured
            by_radius[r].append(prepared_errors_mm(decode_points(probs, r).numpy(), sub))
    scored_raw, scored = _concat(parts_raw), _concat(parts)

    metrics = summarise(scored.errors_mm, info.landmark_names)
    rel_before = reliability(scored_raw.confidence, scored_raw.correct)
    rel_after = reliability(scored.confidence, scored.correct)
    ece_uniform = [reliability(x.confidence, x.correct, UNIFORM_BIN_EDGES)["ece"] for x in (scored_raw, scored)]
    r, groups = grouped_correlation(scored.ere_mm, scored.errors_mm)
    flagged = scored.ere_mm > info.ere_threshold_mm
    rocs = roc_summary(scored.ere_mm, scored.errors_mm, flagged, f"flags: ERE > {info.ere_threshold_mm:.2f} mm")
    rocs_p = roc_summary(scored.p_large, scored.errors_mm, flagged)
    metrics.update({
        "split": split,
        "ground_truth": ground_truth,
        "model": {"name": info.name, "version": info.version, "sha256": loaded.sha256},
        "ece": rel_after["ece"],
        "ece_uncalibrated": rel_before["ece"],
        "ece_unit": "percent",
        "ece_bins": ECE_DEFINITION,
        "ece_uniform_bins_before_after": ece_uniform,
        "ere_error_pearson": r,
        "roc_auc_2mm": rocs[2.0]["auc"],
        "roc_auc_4mm": rocs[4.0]["auc"],
        "p_large_error_roc_auc_2mm": rocs_p[2.0]["auc"],
        "p_large_error_roc_auc_4mm": rocs_p[4.0]["auc"],
        "p_large_error_reliability": reliability(scored.p_large, scored.errors_mm > LARGE_ERROR_MM, P_LARGE_BIN_EDGES),
        "ere_threshold_mm": info.ere_threshold_mm,
        "flagged_percent": float(100 * flagged.mean()),
        "flagged_share_of_errors_over_4mm": rocs[4.0]["threshold_point"][1],
        "flagged_share_of_points_under_2mm": _share(flagged[scored.errors_mm <= 2.0]),
        "reliability_before": rel_before,
        "reliability_after": rel_after,
        "mre_mm_by_refine_radius": {str(r): float(np.concatenate(v).mean()) for r, v in by_radius.items()},
        "per_image_mre_mm": {i: float(e.mean()) for i, e in zip(data.ids, scored.errors_mm)},
    })
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    title = f"{info.name} on {split} ({len(samples)} images)"
    for name, draw in (
        ("reliability.png", lambda p: reliability_diagram(rel_before, rel_after, p, title)),
        ("ere_vs_error.png", lambda p: ere_scatter(scored.ere_mm.ravel(), scored.errors_mm.ravel(), groups, r, p, title)),
        ("roc.png", lambda p: roc_plot({
            **{f"ERE, error > {k:g} mm (n={v['n_positive']})": v for k, v in rocs.items()},
            **{f"P(error > {LARGE_ERROR_MM:g} mm), error > {k:g} mm": dict(v, threshold_point=None, ls="--")
               for k, v in rocs_p.items()}}, p, title)),
    ):
        atomic_write(out / name, draw)
    atomic_write(out / "metrics.json", lambda p: Path(p).write_text(json_text(metrics)))

    def write_predictions(tmp):
        with open(tmp, "wb") as f:  # a file object: savez_compressed would append ".npz" to a bare name
            np.savez_compressed(f, ids=np.array(data.ids), pred_px=scored.pred_px, errors_mm=scored.errors_mm,
                                ere_mm=scored.ere_mm, confidence=scored.confidence, p_large_error=scored.p_large)

    atomic_write(out / "predictions.npz", write_predictions)
    return metrics


def _share(flags) -> float:
    """Fraction of True in a boolean array; NaN when it is empty."""
    return float(flags.mean()) if flags.size else float("nan")


def _concat(parts):
    return Scored(*(np.concatenate([getattr(p, f) for p in parts]) for f in Scored.__dataclass_fields__))
