"""The two-stage detector's flag threshold and conformal region masses, fitted on the refiner's
held-out images through the detect path (the combined coarse + fine map), by the first stage's
rules (calibration.py): the threshold catches FLAG_TPR of the held-out errors > FLAG_ERROR_MM,
the masses are split-conformal per landmark (uncertainty/conformal.py).

The combined map is sharper than the coarse one, so the first stage's threshold and masses,
read on it, flag too little and draw regions that hold the truth less often than they say.
The fine maps' temperatures were fitted when the refiner was trained (refiner_holdout.py).
Never on Test1/Test2: the images are the refiner's recorded holdout (the base model's).
"""

from dataclasses import replace
from pathlib import Path

import numpy as np

from ..detection.predictor import LandmarkDetector
from ..store.refinerfile import LoadedRefiner, load_refiner, save_refiner_settings
from ..uncertainty.conformal import RULE, fit_region_masses, masses_for
from ..uncertainty.levels import LARGE_ERROR_MM
from .calibration import FLAG_ERROR_MM, FLAG_TPR, ere_threshold, holdout_samples
from .scoring import observe_samples, outcome


def fit_two_stage_settings(model_path, refiner: LoadedRefiner, samples, device="cpu", progress=None) -> tuple:
    """(ERE threshold mm, region masses, record) of the model with this refiner on annotated `samples`."""
    unfitted = LoadedRefiner(refiner.net, replace(refiner.info, ere_threshold_mm=None, region_masses={},
                                                  calibration={}), refiner.path, refiner.sha256)
    detector = LandmarkDetector(model_path, device, refiner=unfitted)
    nominal = detector.with_settings(region_masses=masses_for({}, len(detector.info.landmark_names)),
                                     regions="nominal")
    o = outcome(detector, observe_samples(detector, samples, progress), nominal)
    located = np.isfinite(o.errors_mm) & np.isfinite(o.ere_mm)
    threshold = ere_threshold(o.ere_mm[located], o.errors_mm[located])
    masses = fit_region_masses(o.scores)
    flagged = o.ere_mm > threshold
    large = o.errors_mm > LARGE_ERROR_MM
    record = {
        "images": [s.id for s in samples], "n_points": int(o.errors_mm.size),
        "holdout_mre_mm": float(o.errors_mm[located].mean()),
        "threshold_rule": f"catch {FLAG_TPR:.0%} of holdout errors > {FLAG_ERROR_MM} mm (combined-map ERE)",
        "holdout_flagged_percent": float(100 * flagged.mean()),
        "holdout_errors_over_4mm_flagged_percent": float(100 * flagged[large].mean()) if large.any() else None,
        "regions": {"rule": RULE, "nominal_coverage_90_percent": float(100 * o.coverage("90").mean())},
        "first_stage_threshold_mm": float(detector.info.ere_threshold_mm),
    }
    return threshold, masses, record


def calibrate_refiner(model_path, refiner_path, dataset, ground_truth="mean", out=None, device="cpu", log=print,
                      progress=None) -> dict:
    """Fit the two-stage settings on the refiner's held-out images and write them into the refiner file
    (`out`, default: the file itself; atomically, the weights unchanged).  Returns the record."""
    refiner = load_refiner(refiner_path, device)
    hold = holdout_samples(refiner.info.training, dataset, ground_truth, refiner_path, "refiner")
    threshold, masses, record = fit_two_stage_settings(model_path, refiner, hold, device, progress)
    info = replace(refiner.info, ere_threshold_mm=round(float(threshold), 4), region_masses=masses,
                   calibration=record)
    save_refiner_settings(out or refiner_path, refiner, info)
    log(f"two stages calibrated on {len(hold)} held-out images: ERE threshold {threshold:.2f} mm (first stage "
        f"{record['first_stage_threshold_mm']:.2f} mm), {record['holdout_flagged_percent']:.0f} % of points flagged; "
        f"90 % masses {min(masses['90']):.3f}-{max(masses['90']):.3f} (nominal 90 % regions held the truth "
        f"{record['regions']['nominal_coverage_90_percent']:.0f} % of the time); written to "
        f"{Path(out or refiner_path)}")
    return record
