"""Evaluation on an annotated split: accuracy, calibration, ERE correlation and ROC, with plots.

The figures are figures of what `ceph-landmarks detect` produces: every image is read with
images.read_radiograph and run through detect's predictor, LandmarkDetector.observe (framing,
orientation check, aligned second pass) then LandmarkDetector.decide with the model's own
settings.  The points, ERE, P(error > 4 mm) and the flags (every reason: the flag rule, missing,
implausible, near the edge) are decide's.  Only the statistics that need the maps themselves
(reliability and ECE before and after the temperatures, MRE by refinement radius) read the raw
logits of the pass detect kept, in that pass's model pixels.  One image is held at a time.
"""

from pathlib import Path

import numpy as np

from ..annotations.datasets import load_dataset
from ..detection.predictor import LandmarkDetector
from ..detection.result import (
    FLAG_IMPLAUSIBLE,
    FLAG_MISSING,
    FLAG_NEAR_EDGE,
    FLAG_OUTSIDE_CROP,
    FLAG_UNCERTAIN,
    LEFT_FACING,
    RIGHT_FACING,
)
from ..files import atomic_write, json_text
from ..network.heatmaps import argmax_2d, decode_points, mask_padding, softmax_2d
from ..outputs.plots import ere_scatter, reliability_diagram, roc_plot
from ..uncertainty.conformal import covered
from ..uncertainty.levels import LARGE_ERROR_MM
from .metrics import (
    ECE_DEFINITION,
    UNIFORM_BIN_EDGES,
    finite_mean,
    grouped_correlation,
    hits,
    radial_errors_mm,
    reliability,
    roc_curve,
    summarise,
)
from .scoring import observe_each, point_errors_mm, true_point_scores

ERROR_LEVELS_MM = (2.0, 4.0)
P_LARGE_BIN_EDGES = (0.0, 0.001, 0.01, 0.05, 0.2, 1.0)  # reliability of p_large_error: most values are tiny
REFINE_RADII = (0, 1, 2)  # 0: plain argmax
FLAG_REASONS = (FLAG_UNCERTAIN, FLAG_MISSING, FLAG_IMPLAUSIBLE, FLAG_NEAR_EDGE)  # and FLAG_OUTSIDE_CROP with a refiner

PREDICTOR = ("detect's predictor: LandmarkDetector.observe (physical framing when the spacing is known, orientation "
             "check, aligned second pass when it helps) then decide with the model's own settings (temperatures, "
             "convention offsets if any, and its flag rule: the score over its threshold, missing, implausible, "
             "near the edge); points, ERE, P(error > 4 mm) and flags are decide's")
MAPS = ("ECE, the reliability bins and mre_mm_by_refine_radius read the raw and the calibrated maps of the pass "
        "detect kept (padding masked), in its model pixels; correct = the argmax pixel within one pixel's area of "
        "the true point")
MISSING_RULE = ("a point reported missing has no coordinates; its error counts as infinite (as scoring.outcome): a "
                "miss at every SDR radius and an error above every ROC level; MRE, SD, Pearson r and the ERE plot "
                "use the points with coordinates (n_missing_points counts the others)")


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


def evaluate(model_path, dataset, split, out_dir, ground_truth="mean", device="cpu", log=print,
             progress=None, refiner=None) -> dict:
    """Run detect's predictor on a split; write metrics.json, predictions.npz and the plots into
    out_dir; return the metrics.  progress(fraction, stage) is told how far it is (default: a bar with
    an ETA when stderr is a terminal).  refiner: the second stage (a file or a LoadedRefiner), as
    `detect --refine` runs it; the points, ERE, P and flags are then the combined map's (the maps'
    own statistics, ECE and the refinement radii, stay the first stage's)."""
    from ..progress import Progress

    report = progress if progress is not None else Progress()
    report(0.0, "loading the model")
    detector = LandmarkDetector(model_path, device, refiner=refiner)
    info = detector.info
    samples = load_dataset(dataset, split, ground_truth)
    rows = {k: [] for k in ("pred_px", "errors_mm", "ere_mm", "confidence", "p_large", "flagged", "reasons",
                            "conf_raw", "correct_raw", "conf_cal", "correct_cal", "covered_50", "covered_90")}
    by_radius = {r: [] for r in REFINE_RADII}
    passes = {"orientation": {RIGHT_FACING: 0, LEFT_FACING: 0}, "aligned_images": 0}
    flag_rule, ids, refined = None, [], []
    for k, case in enumerate(observe_each(detector, samples)):  # one observation (its logits) held at a time
        report(0.95 * (k + 1) / len(samples), f"evaluating {split}: {k + 1} of {len(samples)} images")
        det = detector.decide(case.obs, contours=False, extents=False)
        ids.append(case.id)
        flag_rule = det.flag_rule_text()
        passes["orientation"][case.obs.orientation] = passes["orientation"].get(case.obs.orientation, 0) + 1
        passes["aligned_images"] += bool(case.obs.alignment)
        rows["pred_px"].append(det.points_px)
        rows["errors_mm"].append(point_errors_mm(det, case.true_px))
        rows["ere_mm"].append([lm.ere_mm for lm in det.landmarks])
        rows["confidence"].append([lm.confidence for lm in det.landmarks])
        rows["p_large"].append([lm.p_large_error for lm in det.landmarks])
        rows["flagged"].append([lm.flagged for lm in det.landmarks])
        rows["reasons"].append([lm.flag_reasons for lm in det.landmarks])
        scores = true_point_scores(det, case)
        for level, masses in detector.settings.region_masses.items():
            rows[f"covered_{level}"].append(covered(scores, masses))
        refined += [bool(lm.refined) for lm in det.landmarks if lm.refined is not None]
        # The maps themselves: the kept pass's raw logits, without and with the model's temperatures.
        logits = mask_padding(case.obs.logits[None], [case.obs.frame])
        true_uv = case.true_uv
        calibrated = None
        for key, temps in (("raw", None), ("cal", detector.temperatures)):
            probs = softmax_2d(logits, temps)
            rows[f"conf_{key}"].append(probs.amax(dim=(2, 3))[0].numpy())
            rows[f"correct_{key}"].append(hits(argmax_2d(probs)[0].numpy(), true_uv))
            calibrated = probs
        for r in REFINE_RADII:  # the effect of sub-pixel refinement, measured on the calibrated map
            px = case.obs.frame.model_to_image(decode_points(calibrated, r)[0].numpy())
            by_radius[r].append(radial_errors_mm(px, case.true_px, det.spacing_mm))
    a = {k: np.asarray(v) for k, v in rows.items() if k != "reasons"}
    ref = detector.refiner
    refiner_record = {"file": Path(ref.path).name, "sha256": ref.sha256, "base_model": dict(ref.info.base_model),
                      "refined_percent": float(100 * np.mean(refined)) if refined else float("nan")} if ref else {}
    errors, ere, flagged = a["errors_mm"], a["ere_mm"], a["flagged"]

    metrics = summarise(errors, info.landmark_names)
    rel_before = reliability(a["conf_raw"], a["correct_raw"])
    rel_after = reliability(a["conf_cal"], a["correct_cal"])
    ece_uniform = [reliability(a[f"conf_{k}"], a[f"correct_{k}"], UNIFORM_BIN_EDGES)["ece"] for k in ("raw", "cal")]
    located = np.isfinite(errors)
    r, groups = grouped_correlation(ere[located], errors[located])
    label = f"flags: {flag_rule} or another reason"
    rocs = roc_summary(ere, errors, flagged, label)
    rocs_p = roc_summary(a["p_large"], errors, flagged)
    n_points = max(1, errors.size)
    metrics.update({
        "split": split,
        "ground_truth": ground_truth,
        "model": {"name": info.name, "version": info.version, "sha256": detector.model.sha256},
        "predictor": PREDICTOR + ("; second stage: the refiner's combined coarse + fine map" if refiner_record else ""),
        **({"refiner": refiner_record} if refiner_record else {}),
        "maps": MAPS,
        "missing_points": MISSING_RULE,
        "passes": passes,
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
        "p_large_error_reliability": reliability(a["p_large"], errors > LARGE_ERROR_MM, P_LARGE_BIN_EDGES),
        "ere_threshold_mm": info.ere_threshold_mm,
        "flag_rule": flag_rule,
        "flagged_percent": 100 * _share(flagged),
        "flagged_by_reason_percent": {reason: float(100 * sum(reason in x for im in rows["reasons"] for x in im)
                                                    / n_points)
                                      for reason in FLAG_REASONS + (FLAG_OUTSIDE_CROP,) * bool(refiner_record)},
        "flagged_share_of_errors_over_4mm": rocs[4.0]["threshold_point"][1],
        "flagged_share_of_points_under_2mm": _share(flagged[errors <= 2.0]),
        "regions": detector.settings.regions,
        "region_coverage_percent": {level: 100 * _share(a[f"covered_{level}"]) for level in ("50", "90")},
        "region_coverage_90_percent_per_landmark": [100 * _share(c) for c in a["covered_90"].T],
        "reliability_before": rel_before,
        "reliability_after": rel_after,
        "mre_mm_by_refine_radius": {str(r): float(np.concatenate(v).mean()) if v else float("nan")
                                    for r, v in by_radius.items()},
        "per_image_mre_mm": {i: finite_mean(e) for i, e in zip(ids, errors, strict=True)},
    })
    report(0.95, "writing the metrics and plots")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    title = f"{info.name} on {split} ({len(samples)} images)"
    for name, draw in (
        ("reliability.png", lambda p: reliability_diagram(rel_before, rel_after, p, title)),
        ("ere_vs_error.png", lambda p: ere_scatter(ere[located], errors[located], groups, r, p, title)),
        ("roc.png", lambda p: roc_plot({
            **{f"ERE, error > {k:g} mm (n={v['n_positive']})": v for k, v in rocs.items()},
            **{f"P(error > {LARGE_ERROR_MM:g} mm), error > {k:g} mm": dict(v, threshold_point=None, ls="--")
               for k, v in rocs_p.items()}}, p, title)),
    ):
        atomic_write(out / name, draw)
    atomic_write(out / "metrics.json", lambda p: Path(p).write_text(json_text(metrics)))

    def write_predictions(tmp):
        with open(tmp, "wb") as f:  # a file object: savez_compressed would append ".npz" to a bare name
            np.savez_compressed(f, ids=np.array(ids), pred_px=a["pred_px"], errors_mm=errors, ere_mm=ere,
                                confidence=a["confidence"], p_large_error=a["p_large"], flagged=flagged)

    atomic_write(out / "predictions.npz", write_predictions)
    report(1.0, "done")
    if progress is None:
        report.close()
    return metrics


def _share(flags) -> float:
    """Fraction of True in a boolean array; NaN when it is empty."""
    return float(flags.mean()) if flags.size else float("nan")

