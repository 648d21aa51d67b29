"""The two-stage detector's flag threshold and conformal region masses, fitted through the detect
path (the combined coarse + fine map), by the first stage's rules (calibration.py): the threshold
catches FLAG_TPR of the errors > FLAG_ERROR_MM, the masses are split-conformal per landmark
(uncertainty/conformal.py).

The combined map is sharper than the coarse one, so the first stage's threshold and masses,
read on it, flag too little and draw regions that hold the truth less often than they say.
The fine maps' temperatures were fitted when the refiner was trained (refiner_holdout.py).

The images: the refiner's recorded holdout (the base model's), read with the refiner itself, and,
when fold refiners are given (refiner_crossfit.py: train-refiner --cross-fit K), every training
image read with the fold refiner that did not train on it.  Never Test1/Test2.
"""

from dataclasses import replace
from pathlib import Path

import numpy as np

from ..annotations.datasets import load_dataset
from ..detection.predictor import LandmarkDetector
from ..store.refinerfile import LoadedRefiner, load_refiner, save_refiner_settings
from ..uncertainty.conformal import RULE, fit_region_masses, masses_for
from ..uncertainty.levels import LARGE_ERROR_MM
from .calibration import FLAG_ERROR_MM, FLAG_TPR, ere_threshold, holdout_samples
from .refiner_crossfit import default_fold_paths, load_fold_refiners
from .scoring import Outcome, observe_each, outcome


def _unfitted(refiner: LoadedRefiner) -> LoadedRefiner:
    """The refiner without two-stage settings (the detector then reads the base model's)."""
    return LoadedRefiner(refiner.net, replace(refiner.info, ere_threshold_mm=None, region_masses={}, calibration={}),
                         refiner.path, refiner.sha256)


def _outcome(model_path, refiner: LoadedRefiner, samples, device, progress) -> Outcome:
    """Every sample decided with nominal region masses through the detect path with this refiner."""
    detector = LandmarkDetector(model_path, device, refiner=_unfitted(refiner))
    nominal = detector.with_settings(region_masses=masses_for({}, len(detector.info.landmark_names)),
                                     regions="nominal")
    return Outcome.joined([outcome(detector, [case], nominal) for case in observe_each(detector, samples, progress)])


def _part(report, start: float, share: float, name: str):
    """A progress callback for one source of images: its share of the whole, its name before the stage."""
    return lambda f, stage: report(start + f * share, f"{name}: {stage}")


def _summary(name, refiner: LoadedRefiner | None, samples, o: Outcome) -> dict:
    """One source's figures; refiner None: the calibrated refiner itself (its file changes as it is written)."""
    located = np.isfinite(o.errors_mm)
    return {"images": name, "refiner_sha256": None if refiner is None else refiner.sha256, "n_images": len(samples),
            "mre_mm": float(o.errors_mm[located].mean()),
            "nominal_coverage_90_percent": float(100 * o.coverage("90").mean())}


def _flag_shares(prefix: str, o: Outcome, threshold: float) -> dict:
    flagged = o.ere_mm > threshold
    large = o.errors_mm > LARGE_ERROR_MM
    return {f"{prefix}flagged_percent": float(100 * flagged.mean()),
            f"{prefix}errors_over_4mm_flagged_percent": float(100 * flagged[large].mean()) if large.any() else None}


def fit_two_stage_settings(model_path, refiner: LoadedRefiner, samples, device="cpu", progress=None,
                           folds=(), dataset_samples=None) -> tuple:
    """(ERE threshold mm, region masses, record) of the model with this refiner on annotated `samples`
    (its held-out images), joined by each fold refiner's out-of-fold images (from dataset_samples)."""
    report = progress or (lambda fraction, stage: None)
    sources = [("held-out", refiner, list(samples))]
    by_id = {s.id: s for s in (dataset_samples or [])}
    for f in folds:
        cf = f.info.training["cross_fit"]
        sources.append((f"fold {cf['fold']} of {cf['folds']} (left out of its training)", f,
                        [by_id[i] for i in cf["out_of_fold_ids"]]))
    total = sum(len(s) for _, _, s in sources)
    outcomes, summaries, done = [], [], 0
    for name, r, ss in sources:
        o = _outcome(model_path, r, ss, device, _part(report, done / total, len(ss) / total, name))
        outcomes.append(o)
        summaries.append(_summary(name, None if r is refiner else r, ss, o))
        done += len(ss)
    o = Outcome.joined(outcomes)
    located = np.isfinite(o.errors_mm) & np.isfinite(o.ere_mm)
    threshold = ere_threshold(o.ere_mm[located], o.errors_mm[located])
    masses = fit_region_masses(o.scores)
    first = LandmarkDetector(model_path, device).info.ere_threshold_mm
    record = {
        "images": [s.id for _, _, ss in sources for s in ss], "n_points": int(o.errors_mm.size),
        "holdout_mre_mm": summaries[0]["mre_mm"],
        "threshold_rule": f"catch {FLAG_TPR:.0%} of errors > {FLAG_ERROR_MM} mm (combined-map ERE)",
        **_flag_shares("holdout_", outcomes[0], threshold),  # the held-out images alone
        **(_flag_shares("", o, threshold) if folds else {}),  # every calibration image
        "regions": {"rule": RULE, "nominal_coverage_90_percent": float(100 * o.coverage("90").mean())},
        "first_stage_threshold_mm": float(first),
        "cross_fit": {"folds": len(folds), "sources": summaries} if folds else None,
    }
    return threshold, masses, record


def calibrate_refiner(model_path, refiner_path, dataset, ground_truth="mean", out=None, device="cpu", log=print,
                      progress=None, folds=None) -> dict:
    """Fit the two-stage settings and write them into the refiner file (`out`, default: the file itself;
    atomically, the weights unchanged).  folds: fold refiner files (None: those train-refiner --cross-fit
    left in the refiner's work folder, if any).  Returns the record."""
    refiner = load_refiner(refiner_path, device)
    hold = holdout_samples(refiner.info.training, dataset, ground_truth, refiner_path, "refiner")
    fold_paths = default_fold_paths(refiner_path) if folds is None else list(folds)
    fold_refiners = load_fold_refiners(fold_paths, refiner, device) if fold_paths else []
    train = load_dataset(dataset, "train", ground_truth) if fold_refiners else None
    threshold, masses, record = fit_two_stage_settings(model_path, refiner, hold, device, progress, fold_refiners,
                                                       train)
    info = replace(refiner.info, ere_threshold_mm=round(float(threshold), 4), region_masses=masses,
                   calibration=record)
    save_refiner_settings(out or refiner_path, refiner, info)
    where = (f"{len(record['images'])} images ({len(hold)} held out, the rest left out of {len(fold_refiners)} "
             f"fold refiners' training)" if fold_refiners else f"{len(hold)} held-out images")
    log(f"two stages calibrated on {where}: ERE threshold {threshold:.2f} mm (first stage "
        f"{record['first_stage_threshold_mm']:.2f} mm), {record['holdout_flagged_percent']:.0f} % of points flagged; "
        f"90 % masses {min(masses['90']):.3f}-{max(masses['90']):.3f} (nominal 90 % regions held the truth "
        f"{record['regions']['nominal_coverage_90_percent']:.0f} % of the time); written to "
        f"{Path(out or refiner_path)}")
    return record
