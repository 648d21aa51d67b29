"""Clinic adaptation: conventions, temperatures, conformal regions and the flag rule, refitted on a
clinic's own 10-20 annotated radiographs, every figure cross-fitted.

The network runs once per clinic image (LandmarkDetector.observe); everything after is a
choice of detect.Settings, scored with the same LandmarkDetector.decide that `detect`
runs.  Three methods:
- "none": the base network and its points, recalibrated;
- "offsets": convention offsets, the median head-frame residual per landmark (conventions.py);
- "fine-tune": the decoder retrained for a few epochs on the clinic's images (finetune.py).
  Each image is then read in maps from a decoder not trained on it (out of fold), and those
  maps are recalibrated as "none" recalibrates the base maps.
Steps of one fit, in order, each on the images it is given:
1. the offsets ("offsets" only);
2. one temperature scale shared by all landmarks, minimising the heatmap NLL of the
   true points (moved by the offsets);
3. split-conformal region masses per landmark (conformal.py);
4. the flag rule: P(error > 4 mm) on the clinic-calibrated maps, adjusted for the image's other
   landmarks (flag_score.image_adjusted_p_large), >= the threshold that flags FLAG_SHARE of the
   clinic's points (flag_threshold); the final fit takes it from the K-fold cross-validated
   reading that chose the method, a fold's fit from its own images.
Steps 2-4 read each image with offsets learnt without it (leave-one-out), so regions and
flags are sized for images the offsets were not fitted on.  The method is chosen by
K-fold cross-validation within the clinic's images (lowest MRE; "none" on a tie), and the
figures reported "after" are those cross-validated figures, never in-sample ones.
"""

from dataclasses import dataclass, field, replace

import numpy as np
import torch

from ..detection.predictor import LandmarkDetector, Settings
from ..errors import CephError
from ..imaging.geometry import frame_landmarks, shifts_uv
from ..imaging.images import read_radiograph
from ..network.heatmaps import bilinear_target, heatmap_nll, mask_padding
from ..network.inputs import ModelInput
from ..store.modelmeta import (
    CONVENTION_OFFSET_LIMIT_MM,
    FLAG_P_LARGE_RANGE,
    REFINER_TEMPERATURE_SCALE_RANGE,
    TEMPERATURE_RANGE,
)
from ..store.refinerfile import temperatures_tensor
from ..training.scoring import Case, Outcome, figures, measurement_coverage, outcome
from ..uncertainty.conformal import RULE, fit_region_masses
from ..uncertainty.flag_score import IMAGE_WEIGHT, image_adjusted_p_large
from ..uncertainty.levels import LARGE_ERROR_MM
from .conventions import residuals_mm, robust_offsets
from .finetune import EPOCHS as FINE_TUNE_EPOCHS
from .finetune import LEARNING_RATE as FINE_TUNE_LR
from .finetune import encoder_outputs, fine_tune, logits_of

FINE_TUNE = "fine-tune"
METHODS = ("none", "offsets", FINE_TUNE)
MIN_IMAGES = 10  # below this a 90 % conformal region is barely finite and offsets are noise
CV_FOLDS = 5
# Adapted models flag the points whose clinic-calibrated maps, weighed with the image's other points, give
# the highest chance to an error over 4 mm: the adjusted P(error > 4 mm) >= the threshold that flags this
# share of the clinic's own cross-fitted points.  A share of several hundred points is a stable fit where
# the clinic's handful of large errors is not, and it follows a fine-tune's sharper maps, which a fixed
# probability does not (docs/adaptation.md, Flags).  Chosen with Test1 as the clinic, never on Test2.
FLAG_SHARE = 0.26
TEMPERATURE_SCALE_RANGE = (0.5, 4.0)  # the shared temperature factor adaptation may choose
TEMPERATURE_SEARCH_STEPS = 8  # golden-section steps: the factor to within about 3 %
LOGIT_BINS = 4096  # histogram bins per map for the temperature search's normaliser


# --- fitting -----------------------------------------------------------------------

def _base_points(detector, cases, base: Settings) -> None:
    """Fill each case's base_uv: its points under the base settings (no offsets), decided once."""
    for c in cases:
        if c.base_uv is None:
            det = detector.decide(c.obs, base, contours=False, extents=False)
            c.base_uv = c.obs.frame.image_to_model(np.nan_to_num(det.points_px, nan=0.0))


def _residuals(detector, cases) -> np.ndarray:
    """(n, L, 2) head-frame residuals (mm) of the base points."""
    s, n = frame_landmarks(detector.info.landmark_abbreviations)
    return np.array([residuals_mm(c.base_uv, c.true_uv, c.mm_per_px, s, n) for c in cases])


def _leave_one_out_offsets(residuals) -> list:
    """For each case, the offsets learnt from all the others."""
    n = len(residuals)
    return [robust_offsets(np.delete(residuals, i, axis=0)) for i in range(n)]


def _logit_histogram(case: Case):
    """(bin centres (L, B), counts (L, B)) of each map's logits inside the image, cached on the case:
    log-sum-exp over a map at any temperature from B numbers instead of every pixel."""
    if case.logit_histogram is None:
        inside = torch.as_tensor(case.obs.frame.image_mask()).reshape(-1)
        x = case.obs.logits.float().reshape(len(case.obs.logits), -1)[:, inside]
        lo, hi = x.amin(1, keepdim=True), x.amax(1, keepdim=True)
        width = (hi - lo).clamp(min=1e-6) / LOGIT_BINS
        idx = ((x - lo) / width).long().clamp(max=LOGIT_BINS - 1)
        counts = torch.zeros(x.shape[0], LOGIT_BINS).scatter_add_(1, idx, torch.ones_like(x))
        case.logit_histogram = (lo + width * (torch.arange(LOGIT_BINS) + 0.5), counts)
    return case.logit_histogram


def _temperature_scale(detector, cases, settings_per_case) -> float:
    """The shared factor on the temperatures minimising the mean NLL of the true points, each
    read in its image's map after that image's convention shift (moved back onto the map);
    golden-section search over log(scale) in TEMPERATURE_SCALE_RANGE.  The normaliser comes from
    a fine histogram of each map's logits (_logit_histogram), which is within LOGIT_BINS' width of
    exact and makes the search cost nothing next to the network."""
    base_t = torch.as_tensor(settings_per_case[0].temperatures, dtype=torch.float32)
    sella, nasion = frame_landmarks(detector.info.landmark_abbreviations)
    terms = []
    for c, s in zip(cases, settings_per_case, strict=True):
        shift = 0.0 if s.offsets_mm is None else shifts_uv(c.base_uv, s.offsets_mm, c.mm_per_px, sella, nasion)
        uv = torch.as_tensor(c.true_uv - shift, dtype=torch.float32)[None]
        logits = mask_padding(c.obs.logits.float()[None], [c.obs.frame])
        idx, wts, _ = bilinear_target(uv, logits.shape[2], logits.shape[3])
        target = (logits.reshape(1, logits.shape[1], -1).gather(-1, idx) * wts).sum(-1)[0]  # (L,) logit at truth
        terms.append((target, *_logit_histogram(c)))

    def loss(log_scale):
        t = base_t * float(np.exp(log_scale))
        total = 0.0
        for target, centres, counts in terms:
            z = centres / t[:, None]
            lse = z.amax(1) + torch.log((counts * torch.exp(z - z.amax(1, keepdim=True))).sum(1))
            total += float((lse - target / t).mean())
        return total

    return _golden_log_search(loss, TEMPERATURE_SCALE_RANGE)


def _golden_log_search(loss, lo_hi) -> float:
    """The factor in `lo_hi` minimising loss(log factor): golden-section search on the log."""
    lo, hi = np.log(lo_hi)
    g = (np.sqrt(5) - 1) / 2
    a, b = hi - g * (hi - lo), lo + g * (hi - lo)
    fa, fb = loss(a), loss(b)
    for _ in range(TEMPERATURE_SEARCH_STEPS):
        if fa < fb:
            hi, b, fb = b, a, fa
            a = hi - g * (hi - lo)
            fa = loss(a)
        else:
            lo, a, fa = a, b, fb
            b = lo + g * (hi - lo)
            fb = loss(b)
    return float(np.exp((lo + hi) / 2))


def _fine_temperature_scale(detector, cases, settings_per_case) -> float:
    """The clinic's shared factor on the second stage's temperatures: the one minimising the mean NLL of
    the true points that lie inside their crops, read in the fine maps after each image's convention
    shift (moved back), as _temperature_scale does for the coarse maps.  1 without such points."""
    sella, nasion = frame_landmarks(detector.info.landmark_abbreviations)
    base_t = temperatures_tensor(detector.refiner.info)
    logits, targets = [], []
    for c, s in zip(cases, settings_per_case, strict=True):
        shift = 0.0 if s.offsets_mm is None else shifts_uv(c.base_uv, s.offsets_mm, c.mm_per_px, sella, nasion)
        truth_px = c.obs.frame.model_to_image(c.true_uv - shift)
        uv = np.stack([crop.image_to_crop(t) for crop, t in zip(c.obs.fine.crops, truth_px, strict=True)])
        h, w = c.obs.fine.logits.shape[1:]
        inside = (uv[:, 0] >= 0) & (uv[:, 0] <= w - 1) & (uv[:, 1] >= 0) & (uv[:, 1] <= h - 1)
        logits.append(c.obs.fine.logits.float())
        targets.append(np.where(inside[:, None], uv, np.nan))
    x, uv = torch.stack(logits), torch.as_tensor(np.stack(targets), dtype=torch.float32)
    counted = torch.isfinite(uv).all(-1)
    if not counted.any():
        return 1.0
    uv = torch.nan_to_num(uv)

    def loss(log_scale):
        nll = heatmap_nll(x, uv, base_t * float(np.exp(log_scale)), reduce=False)
        return float(nll[counted].mean())

    return _golden_log_search(loss, REFINER_TEMPERATURE_SCALE_RANGE)


def fit(detector: LandmarkDetector, cases, method: str, flag_p_large=None) -> Settings:
    """Settings fitted on `cases` by `method` ("none" or "offsets"; "fine-tune" is "none" on
    out-of-fold cases), cross-fitted as the module says, starting from the model's own settings.
    The flag threshold is fitted on `flag_p_large`, the clinic's P(error > 4 mm) as cross-validation
    read it (adapt passes it for the final fit), else on these cases' own cross-fitted reading."""
    if method not in ("none", "offsets"):
        raise ValueError(f"fit takes 'none' or 'offsets', not {method!r}")
    base = replace(detector.settings, offsets_mm=None)
    _base_points(detector, cases, base)
    if method == "offsets":
        res = _residuals(detector, cases)
        offsets, loo = _plausible(robust_offsets(res), detector), _leave_one_out_offsets(res)
    else:
        offsets, loo = None, [None] * len(cases)
    per_case = [replace(base, offsets_mm=o) for o in loo]
    scale = _temperature_scale(detector, cases, per_case)
    temps = np.clip(np.asarray(base.temperatures) * scale, *TEMPERATURE_RANGE)
    fine_scale = 1.0
    if detector.refiner is not None and all(c.obs.fine is not None for c in cases):
        fine_scale = _fine_temperature_scale(detector, cases, per_case)
    per_case = [replace(s, temperatures=temps, fine_temperature_scale=fine_scale) for s in per_case]
    cross_fitted = outcome(detector, cases, per_case)
    masses = {k: np.asarray(v) for k, v in fit_region_masses(cross_fitted.scores).items()}
    return replace(base, temperatures=temps, offsets_mm=offsets, region_masses=masses, regions="split-conformal",
                   fine_temperature_scale=fine_scale,
                   flag_p_large_min=flag_threshold(cross_fitted.p_large if flag_p_large is None else flag_p_large),
                   flag_image_weight=IMAGE_WEIGHT)


def flag_threshold(p_large, share: float = FLAG_SHARE, image_weight: float = IMAGE_WEIGHT) -> float:
    """The threshold on P(error > 4 mm), (n images, L) adjusted for each image's other landmarks
    (image_adjusted_p_large; image_weight 0: as read), that flags `share` of these points (NaN left
    out), kept within the range a model file accepts."""
    p = image_adjusted_p_large(p_large, image_weight).ravel()
    p = p[np.isfinite(p)]
    if p.size == 0:
        raise CephError("no finite P(error > 4 mm) to fit the flag threshold on")
    return float(np.clip(np.quantile(p, 1 - share), *FLAG_P_LARGE_RANGE))


def _plausible(offsets, detector) -> np.ndarray:
    """The offsets, unless one is beyond what a placement convention can explain (then the clinic's
    points are not the model's landmarks, e.g. listed in another order): CephError naming it."""
    reach = np.hypot(*np.asarray(offsets).T)
    if reach.max() > CONVENTION_OFFSET_LIMIT_MM:
        j = int(np.argmax(reach))
        raise CephError(f"the clinic's {detector.info.landmark_abbreviations[j]} lies {reach[j]:.0f} mm from the "
                        f"model's on average, more than a placement convention explains "
                        f"({CONVENTION_OFFSET_LIMIT_MM:g} mm): check that the clinic's landmarks are in the model's "
                        f"order ({', '.join(detector.info.landmark_abbreviations[:4])}, ...)")
    return offsets


def fold_indices(n: int, k: int = CV_FOLDS, seed: int = 0) -> list:
    """K folds of range(n), seeded (fold sizes differ by at most one)."""
    order = np.random.default_rng(seed).permutation(n)
    return [sorted(order[i::k].tolist()) for i in range(min(k, n))]


def tuned_network(detector, cases):
    """The base network with its decoder fine-tuned on the cases (their encoder outputs)."""
    return fine_tune(detector.model.net, [c.encoded for c in cases], np.stack([c.true_uv for c in cases]))


def read_with(network, case: Case) -> Case:
    """The case as a fine-tuned network reads it: its own maps, on the same frame."""
    return replace(case, obs=replace(case.obs, logits=logits_of(network, case.encoded)), base_uv=None,
                   logit_histogram=None)


def out_of_fold(detector, cases, k: int = CV_FOLDS, progress=None) -> list:
    """The cases as a fine-tune not trained on them sees them: for each of K folds, the decoder is
    fine-tuned on the other folds and the fold's images are read in its maps (same frames)."""
    if any(c.encoded is None for c in cases):
        raise ValueError("fine-tune needs each case's encoder outputs (encode_case)")
    tuned_cases = [None] * len(cases)
    folds = fold_indices(len(cases), k)
    for f, held in enumerate(folds):
        if progress:
            progress(f / len(folds), f"cross-validating fine-tune: tuning fold {f + 1} of {len(folds)}")
        net = tuned_network(detector, [c for i, c in enumerate(cases) if i not in held])
        for i in held:
            tuned_cases[i] = read_with(net, cases[i])
    return tuned_cases


def cross_validate(detector, cases, method: str, k: int = CV_FOLDS, progress=None) -> Outcome:
    """Each case decided by settings fitted on the other folds (for "fine-tune", `cases` are
    out_of_fold cases and the fit is "none")."""
    method = "none" if method == FINE_TUNE else method
    per_case = [None] * len(cases)
    folds = fold_indices(len(cases), k)
    for f, held in enumerate(folds):
        if progress:
            progress(f / len(folds), f"cross-validating {method}: fold {f + 1} of {len(folds)}")
        train = [c for i, c in enumerate(cases) if i not in held]
        s = fit(detector, train, method)
        for i in held:
            per_case[i] = s
    return outcome(detector, cases, per_case)


@dataclass
class Adaptation:
    settings: Settings
    method: str
    before: dict  # figures of the base model on the clinic's images
    after: dict  # cross-validated figures of the chosen method
    by_method: dict = field(default_factory=dict)  # cross-validated MRE of every method tried
    outcomes: dict = field(default_factory=dict)  # "before" and each method's cross-validated Outcome
    network: object = None  # the fine-tuned network when "fine-tune" was chosen, else None
    scored: dict = field(default_factory=dict)  # each method's cross-validated cases (out of fold for fine-tune)


def check_methods(methods) -> None:
    """CephError unless `methods` is a non-empty choice among METHODS."""
    unknown = [m for m in methods if m not in METHODS]
    if unknown or not methods:
        raise CephError(f"unknown adaptation method {(unknown or [''])[0]!r}; choose from {', '.join(METHODS)}")


def _stage(progress, done: int, steps: int):
    """Progress reporter for one of `steps` equal stages, `done` of them finished (None without one)."""
    return (lambda f, stage: progress((done + f) / steps, stage)) if progress else None


def adapt(detector: LandmarkDetector, cases, methods=METHODS, progress=None) -> Adaptation:
    """Choose the method by cross-validation within the cases, then fit it on all of them."""
    check_methods(methods)
    if len(cases) < MIN_IMAGES:
        raise CephError(f"clinic adaptation needs at least {MIN_IMAGES} annotated images, got {len(cases)}")
    names = list(detector.info.landmark_abbreviations)
    outcomes, scored = {"before": outcome(detector, cases, detector.settings)}, {}
    steps = len(methods) + 1 + (FINE_TUNE in methods)  # fine-tune counts twice: the folds' tunes, then the CV
    done = 0
    for method in methods:
        if method == FINE_TUNE:
            scored[method] = out_of_fold(detector, cases, progress=_stage(progress, done, steps))
            done += 1
        else:
            scored[method] = cases
        outcomes[method] = cross_validate(detector, scored[method], method, progress=_stage(progress, done, steps))
        done += 1
    mre = {m: figures(outcomes[m])["mre_mm"] for m in methods}
    chosen = min(methods, key=lambda m: (round(mre[m], 4), m != "none"))  # a tie keeps the base model
    if progress:
        progress(done / steps, f"calibrating: fitting {chosen} on all {len(cases)} images")
    settings = fit(detector, scored[chosen], "none" if chosen == FINE_TUNE else chosen, outcomes[chosen].p_large)
    network = tuned_network(detector, cases) if chosen == FINE_TUNE else None
    return Adaptation(settings, chosen, figures(outcomes["before"], names), figures(outcomes[chosen], names),
                      {m: round(v, 4) for m, v in mre.items()}, outcomes, network, scored)


def record(adaptation: Adaptation, base_sha256: str, ids) -> dict:
    """The adapted model file's "adaptation" metadata."""
    def brief(f):  # NaN (e.g. no error over 4 mm to catch) becomes null
        return {k: (None if not np.isfinite(v) else round(v, 3)) if isinstance(v, float) else v
                for k, v in f.items() if k != "per_landmark"}

    s = adaptation.settings
    return {
        "base_sha256": base_sha256,
        "n_images": len(ids),
        "clinic_images": list(ids),
        "method": adaptation.method,
        "methods_cv_mre_mm": adaptation.by_method,
        "offsets_mm": None if s.offsets_mm is None else np.round(s.offsets_mm, 3).tolist(),
        "cv_before": brief(adaptation.before),
        "cv_after": brief(adaptation.after),
        "cv_folds": CV_FOLDS,
        "fine_tune": {"epochs": FINE_TUNE_EPOCHS, "learning_rate": FINE_TUNE_LR, "trained": "decoder and head",
                      "calibrated_on": "out-of-fold maps"} if adaptation.method == FINE_TUNE else None,
        "region_rule": RULE,
        "flag_rule": f"P(error > {LARGE_ERROR_MM:g} mm) on the clinic-calibrated map, weighed with the image's "
                     f"other points (image weight {s.flag_image_weight:g}), >= {s.flag_p_large_min:.3g}, "
                     f"the threshold that flags {FLAG_SHARE:.0%} of the clinic's cross-fitted points",
    }


# --- the command ----------------------------------------------------------------------

def _refiner_beside(out, refiner) -> None:
    """Put a copy of the refiner beside an adapted model written where no refiner (or another) lies."""
    import shutil

    from ..files import atomic_write, file_sha256
    from ..store.registry import refiner_beside

    target = refiner_beside(out)
    if target.is_file() and file_sha256(target) == refiner.sha256:
        return
    if target.exists():
        raise CephError(f"{target} holds another refiner; the adapted model was written, but its second stage "
                        f"could not be put beside it: move that file away and run adapt again")
    atomic_write(target, lambda tmp: shutil.copyfile(refiner.path, tmp))

def encode_case(detector, case: Case, radiograph) -> None:
    """Keep the case's encoder outputs (for fine-tune), read from the very input its observation used."""
    case.encoded = encoder_outputs(detector.model.net, ModelInput(radiograph).tensor(case.obs.frame))


def read_clinic(dataset, split: str, n_landmarks: int) -> list:
    """The clinic's radiographs and annotations in id order, checked: enough images, the model's
    landmark count, and either every image with a pixel spacing or none (mixed, the offsets in mm
    would mix scales).  In id order because the folds and the fine-tune's batches follow the order:
    the same images listed in another order give the same adapted model."""
    from ..annotations.datasets import load_dataset

    samples = sorted(load_dataset(dataset, split), key=lambda s: s.id)
    if len(samples) < MIN_IMAGES:
        raise CephError(f"clinic adaptation needs at least {MIN_IMAGES} annotated images; {dataset} has "
                        f"{len(samples)}")
    wrong = [s.id for s in samples if np.shape(s.landmarks_px) != (n_landmarks, 2)]
    if wrong:
        raise CephError(f"clinic image {wrong[0]} has {len(samples[0].landmarks_px)} landmarks; the model has "
                        f"{n_landmarks}")
    radiographs = [read_radiograph(s.image_path, s.spacing_mm) for s in samples]
    assumed = [s.id for s, r in zip(samples, radiographs, strict=True) if r.spacing_source == "assumed"]
    if assumed and len(assumed) < len(samples):
        raise CephError(f"clinic image {assumed[0]} has no pixel spacing while others have one: give it a "
                        f"spacing_mm in the dataset's CSV")
    return list(zip(samples, radiographs, strict=True))


def adapt_file(model_path, dataset, out, split: str = "train", methods=METHODS, device: str = "cpu",
               report_dir=None, progress=None, refiner=None) -> dict:
    """`ceph-landmarks adapt`: adapt a model file to a clinic's annotated images; write the adapted
    model (never over the base) and a report.  Returns the adaptation record.

    refiner: the second stage (a LoadedRefiner) or None.  With one, every setting is fitted on the
    combined coarse + fine map that detect then reads (the fine stage itself is not tuned: its crops
    are small and the clinic's images few); the record names it, so that detect runs the adapted model
    with it (store.registry.default_refiner), and a copy lies beside an adapted weights file written
    elsewhere.  With fine-tune, cross-validation reads the fine maps on crops centred on the base
    network's points (the tuned network's move them by about the convention offsets)."""
    from pathlib import Path

    from ..training.loop import check_output_file
    from .adaptation_report import write_report
    from .adapted_model import check_out, write_adapted

    report = progress or (lambda fraction, stage: None)
    check_methods(methods)
    out = Path(out)
    check_out(out, model_path)  # a .safetensors model file, or a .json sidecar (adapted_model.py)
    check_output_file(out)
    report(0.0, "loading the model")
    detector = LandmarkDetector(model_path, device, refiner=refiner)
    info = detector.info
    try:
        frame_landmarks(info.landmark_abbreviations)
    except ValueError as e:
        raise CephError(f"{model_path}: {e}") from None
    pairs = read_clinic(dataset, split, len(info.landmark_names))
    cases = []
    for k, (sample, rad) in enumerate(pairs):
        report(0.05 + 0.3 * k / len(pairs), f"observing the clinic's images: {k + 1} of {len(pairs)}")
        case = Case(sample.id, detector.observe(rad), np.asarray(sample.landmarks_px, dtype=np.float64))
        if FINE_TUNE in methods:
            encode_case(detector, case, rad)
        cases.append(case)
    result = adapt(detector, cases, methods, lambda f, stage: report(0.35 + 0.5 * f, stage))
    report(0.85, "calibrating: measuring interval coverage")
    meas = {"before": measurement_coverage(detector, cases, result.outcomes["before"]),
            "after": measurement_coverage(detector, result.scored[result.method], result.outcomes[result.method])}
    rec = record(result, detector.model.sha256, [c.id for c in cases])
    rec["clinic"] = Path(dataset).resolve().name
    if refiner is not None:
        rec["refiner_sha256"] = refiner.sha256
    rec["measurement_interval_coverage_percent"] = {k: {m: round(v, 1) for m, v in d.items()} for k, d in meas.items()}
    s = result.settings
    info.temperatures = [round(float(t), 5) for t in s.temperatures]
    info.flag_p_large_min = s.flag_p_large_min
    info.flag_image_weight = s.flag_image_weight
    info.region_masses = {k: [round(float(v), 6) for v in m] for k, m in s.region_masses.items()}
    info.convention_offsets_mm = None if s.offsets_mm is None else np.round(s.offsets_mm, 4).tolist()
    info.refiner_temperature_scale = round(float(s.fine_temperature_scale), 5) if refiner is not None else None
    info.adaptation = rec
    report(0.9, "writing the adapted model and its report")
    write_adapted(out, detector.model, result.network, info)
    if refiner is not None:
        _refiner_beside(out, refiner)
    write_report(Path(report_dir) if report_dir else out.with_suffix(".report"), result, rec, meas,
                 list(info.landmark_abbreviations), Path(model_path).name, str(dataset))
    report(1.0, "done")
    return rec
