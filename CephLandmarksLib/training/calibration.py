"""Temperature scaling, the ERE flag threshold and the conformal region masses, fitted on
held-out training images.

Never on Test1/Test2: the images are the model's recorded holdout from the training
split.  The network runs once in eval mode (BatchNorm frozen); the temperatures are
then fitted on the cached logits by L-BFGS on log T (so T stays positive), minimising
the cross-entropy of the pixel holding the true point.  The region masses (conformal.py) are
then fitted through the detect path (scoring.py) on the same images.
"""

from pathlib import Path

import numpy as np
import torch

from ..annotations.datasets import load_dataset
from ..detection.predictor import LandmarkDetector
from ..errors import CephError
from ..files import writable_folder
from ..network.heatmaps import heatmap_nll
from ..store.modelfile import load_model, save_settings
from ..store.modelmeta import (
    ERE_THRESHOLD_RANGE_MM,
    TEMPERATURE_RANGE,  # guards against degenerate fits on tiny or untrained models
)
from ..store.sidecar import SHIPPED_MODELS_DIR, is_sidecar_path
from ..store.sidecar import default_path as sidecar_path
from ..uncertainty.conformal import RULE, fit_region_masses
from .metrics import reliability, threshold_at_tpr
from .prepared import prepare, prepared_logits, score_logits
from .scoring import observe_samples, outcome

FLAG_ERROR_MM = 3.0  # the threshold is chosen to flag this share of errors above this size
FLAG_TPR = 0.8
# A temperature that lowers its landmark's held-out NLL by less than this (nats) is noise and stays 1: on a
# nearly flat loss (an untrained model's uniform maps) the fit drifts to TEMPERATURE_RANGE's edges by float
# rounding alone, differently on different CPUs.
MIN_NLL_GAIN = 0.01


def fit_temperatures(logits: torch.Tensor, uv: torch.Tensor, max_iter: int = 100) -> torch.Tensor:
    """Per-landmark temperatures (L,) minimising the mean NLL of the pixel holding each true point.

    The target is one-hot at the rounded position (the paper's cross-entropy), not the
    training's bilinear split: the confidence is the probability of the predicted *pixel*
    holding the true point, and the one-hot NLL is the proper score for that event.
    """
    uv = uv.round()
    lo, hi = (float(v) for v in np.log(TEMPERATURE_RANGE))
    # float64 and clamped inside the loss: on a nearly flat loss (an untrained model's uniform maps) the
    # strong-Wolfe line search extrapolates steps of ~1e38, which overflow a float32 parameter.
    log_t = torch.zeros(logits.shape[1], dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([log_t], lr=0.5, max_iter=max_iter, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        # Sum over landmarks of per-landmark means: each temperature sees only its own maps.
        t = log_t.clamp(lo, hi).exp().to(logits.dtype)
        loss = heatmap_nll(logits, uv, t, reduce=False).mean(0).sum()
        loss.backward()
        return loss

    opt.step(closure)
    log_t = log_t.detach()
    if not torch.isfinite(log_t).all():
        raise CephError("the temperature fit diverged (the held-out logits are not finite); the model is unchanged")
    t = log_t.clamp(lo, hi).exp().float()
    with torch.no_grad():
        ones = torch.ones_like(t)
        gain = (heatmap_nll(logits, uv, ones, reduce=False) - heatmap_nll(logits, uv, t, reduce=False)).mean(0)
    return torch.where(gain >= MIN_NLL_GAIN, t, ones)


def ere_threshold(ere_mm, errors_mm, error_mm: float = FLAG_ERROR_MM, tpr: float = FLAG_TPR) -> float:
    """ERE above which a point is flagged: the threshold that catches `tpr` of the errors > error_mm,
    kept within ERE_THRESHOLD_RANGE_MM (what a model file may hold)."""
    pos = np.asarray(errors_mm).ravel() > error_mm
    if pos.sum() == 0:  # no errors that large in the holdout: flag only the top 5 % of ERE
        t = float(np.percentile(ere_mm, 95))
    else:
        t = threshold_at_tpr(np.asarray(ere_mm).ravel(), pos, tpr)
    if not np.isfinite(t):
        raise CephError("the ERE threshold fit gave no finite value; the model is unchanged")
    return float(np.clip(t, *ERE_THRESHOLD_RANGE_MM))


def calibrate_loaded(loaded, hold_samples, log=print, prepared=None, device="cpu", save_to=None) -> dict:
    """Fit temperatures and the ERE threshold on `hold_samples`; write them (atomically) to `save_to`:
    a sidecar (``*.json``), or a model file (default: rewrite the loaded one)."""
    info = loaded.info
    data = prepared if prepared is not None else prepare(hold_samples, info.input_size, "preparing holdout")
    logits = prepared_logits(loaded.net, data, device)
    before = score_logits(logits, data, None, info.refine_radius)
    nll_before = float(heatmap_nll(logits, data.uv))
    temps = fit_temperatures(logits, data.uv)
    nll_after = float(heatmap_nll(logits, data.uv, temps))
    after = score_logits(logits, data, temps, info.refine_radius)
    ece_before = reliability(before.confidence, before.correct)["ece"]
    ece_after = reliability(after.confidence, after.correct)["ece"]
    threshold = ere_threshold(after.ere_mm, after.errors_mm)
    info.temperatures = [round(float(t), 5) for t in temps]
    info.ere_threshold_mm = round(threshold, 4)
    info.calibration = {
        "images": list(data.ids), "n_points": int(after.errors_mm.size),
        "nll_before": nll_before, "nll_after": nll_after, "ece_before": ece_before, "ece_after": ece_after,
        "ece_unit": "percent", "holdout_mre_mm": float(after.errors_mm.mean()),
        "threshold_rule": f"catch {FLAG_TPR:.0%} of holdout errors > {FLAG_ERROR_MM} mm",
        "holdout_flagged_percent": float(100 * (after.ere_mm > threshold).mean()),
    }
    save_settings(save_to or loaded.path, loaded, info)
    log(f"calibrated on {len(data.ids)} held-out images: NLL {nll_before:.3f} -> {nll_after:.3f}, "
        f"ECE {ece_before:.2f} % -> {ece_after:.2f} %, ERE threshold {threshold:.2f} mm, "
        f"temperatures {min(info.temperatures):.2f}-{max(info.temperatures):.2f}")
    return info.calibration


def holdout_samples(training: dict, dataset, ground_truth, path, what: str) -> list:
    """The dataset's samples of the held-out images a model's or refiner's training record names (in
    that order); CephError when it names none or the dataset lacks one."""
    ids = training.get("holdout_ids")
    if not ids:
        raise CephError(f"{path} records no held-out images to calibrate on")
    samples = {s.id: s for s in load_dataset(dataset, "train", ground_truth)}
    missing = [i for i in ids if i not in samples]
    if missing:
        raise CephError(f"the dataset lacks the {what}'s held-out images {', '.join(missing[:5])}")
    return [samples[i] for i in ids]


def calibrate_file(model_path, dataset, ground_truth="mean", log=print, out=None, progress=None):
    """`ceph-landmarks calibrate`: refit on the holdout images recorded in the model and write the
    settings to `out`: by default a sidecar (the sidecar given, or ``<weights stem>.calibration.json``
    beside the weights), so the weights file stays byte-identical; a ``.safetensors`` `out` is
    written whole (the model file itself to rewrite it).  Returns the calibration record."""
    loaded = load_model(model_path)
    if out is None:
        out = model_path if is_sidecar_path(model_path) else sidecar_path(loaded.path)
    out = Path(out)
    if is_sidecar_path(out) and out.parent.resolve() != Path(loaded.path).parent.resolve() \
            and Path(loaded.path).parent.resolve() != SHIPPED_MODELS_DIR.resolve():
        raise CephError(f"--out {out}: a sidecar lies beside its weights file, in {Path(loaded.path).parent}")
    writable_folder(out.parent, "the output's folder")  # it is written there, at the end
    hold = holdout_samples(loaded.info.training, dataset, ground_truth, model_path, "model")
    report = progress or (lambda fraction, stage: None)
    report(0.0, f"fitting temperatures on {len(hold)} held-out images")
    result = calibrate_loaded(loaded, hold, log=log, save_to=out)
    calibrate_regions(out, hold, log=log, progress=lambda f, stage: report(0.3 + 0.7 * f, f"fitting regions: {stage}"))
    log(f"calibration written to {out}")
    report(1.0, "done")
    return result


def calibrate_regions(model_path, samples, device: str = "cpu", log=print, progress=None) -> dict:
    """Fit the model's conformal region masses on its held-out training images (`samples`) through
    the detect path, and rewrite the model file or sidecar (atomically).  Temperatures and the flag
    threshold stay as calibrated; returns the masses."""
    detector = LandmarkDetector(model_path, device)
    o = outcome(detector, observe_samples(detector, samples, progress), detector.settings)
    masses = fit_region_masses(o.scores)
    info = detector.info
    info.region_masses = masses
    info.calibration = dict(info.calibration,
                            regions={"rule": RULE, "images": [s.id for s in samples],
                                     "nominal_coverage_90_percent": float(100 * o.coverage("90").mean())})
    save_settings(model_path, detector.model, info)
    log(f"conformal regions fitted on {len(samples)} held-out images: 90 % masses "
        f"{min(masses['90']):.3f}-{max(masses['90']):.3f} (the nominal 90 % regions held the truth "
        f"{100 * o.coverage('90').mean():.0f} % of the time there)")
    return masses
