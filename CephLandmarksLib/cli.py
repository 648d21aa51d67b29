"""The `ceph-landmarks` command: detect, train, calibrate, evaluate.

User errors (CephError, missing files, bad options) print one line on stderr and exit 2;
nothing half-written is left behind.
"""

import argparse
import sys
from pathlib import Path

from . import registry
from .errors import CephError
from .registry import SHIPPED_MODELS_DIR as DEFAULT_MODEL_DIR

PROGRESS_PREFIX = "[progress]"  # `detect --progress` lines: "[progress] FRACTION STAGE" (the Slicer module reads them)
ERROR_PREFIX = "ceph-landmarks: error:"  # the one line a user error prints


def default_model_path() -> Path:
    """registry.default_model_path, in DEFAULT_MODEL_DIR (a module global: tests point it elsewhere)."""
    return registry.default_model_path(DEFAULT_MODEL_DIR)


def _size(text):
    try:
        w, h = (int(v) for v in text.lower().replace("x", " ").replace(",", " ").split())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected WIDTHxHEIGHT, e.g. 320x416, got {text!r}") from None
    return (w, h)


def _spacing(text):
    try:
        values = [float(v) for v in text.replace(",", " ").split()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected millimetres per pixel, got {text!r}") from None
    if len(values) not in (1, 2) or min(values) <= 0:
        raise argparse.ArgumentTypeError(f"expected one or two positive numbers, got {text!r}")
    return values[0] if len(values) == 1 else tuple(values)


def _cmd_train(a):
    from dataclasses import asdict

    from .augment import AugmentSettings
    from .training import TrainConfig, train

    holdout = a.holdout if a.holdout is not None else (10 if a.folds is not None else 20)
    cfg = TrainConfig(
        dataset=a.dataset, out=a.out, input_size=a.input_size, epochs=a.epochs, batch_size=a.batch_size,
        lr=a.lr, holdout=holdout, seed=a.seed, device=a.device, bf16=not a.no_bf16,
        imagenet=a.imagenet, ground_truth=a.ground_truth, work_dir=a.work_dir or "",
        augment=asdict(AugmentSettings.robust() if a.augment == "robust" else AugmentSettings()),
        init_from=a.init_from,
    )
    log = lambda m: print(m, file=sys.stderr, flush=True)  # noqa: E731
    if a.folds is not None:
        from .folds import train_folds

        path = train_folds(cfg, a.folds, resume=a.resume, log=log)
    else:
        path = train(cfg, resume=a.resume, log=log)
    print(path)


def _cmd_calibrate(a):
    from .calibration import calibrate_file

    calibrate_file(a.model, a.dataset, ground_truth=a.ground_truth, log=lambda m: print(m, file=sys.stderr))


def _cmd_detect(a):
    from .batch import detect_files

    model = a.model or default_model_path()
    warn = lambda m: print(f"{ERROR_PREFIX} {m}", file=sys.stderr)  # noqa: E731
    for out in detect_files(a.images, model, a.out_dir, a.spacing, a.device, on_error=warn,
                            orientation_check=not a.no_orientation_check, overlay=not a.no_overlay,
                            heatmaps=a.heatmaps, progress=_print_progress if a.progress else None):
        print(out)


def _print_progress(fraction, stage):
    """One line per step on stderr, `PROGRESS_PREFIX 0.40 stage`: what the Slicer module reads."""
    print(f"{PROGRESS_PREFIX} {fraction:.2f} {stage}", file=sys.stderr, flush=True)


def _cmd_evaluate(a):
    from .evaluate import evaluate

    m = evaluate(a.model or default_model_path(), a.dataset, a.split, a.out, ground_truth=a.ground_truth,
                 device=a.device)
    print(f"{a.split}: MRE {m['mre_mm']:.2f} mm, SDR 2 mm {m['sdr']['2.0']:.1f} %, ECE {m['ece']:.2f}")


def _cmd_report(a):
    from .report import report_file

    for out in report_file(a.image, a.model or default_model_path(), a.out_dir, a.spacing, a.device):
        print(out)


def _cmd_models(a):
    if a.user_dir and Path(a.user_dir).exists() and not Path(a.user_dir).is_dir():
        raise CephError(f"--user-dir {a.user_dir} is not a folder")
    entries = registry.ModelRegistry(a.user_dir, shipped_dir=DEFAULT_MODEL_DIR).models() if a.user_dir \
        else registry.shipped_models(DEFAULT_MODEL_DIR)
    for e in entries:
        print(f"{e.label}\t{e.path}")
    if not entries:
        print(f"ceph-landmarks: no models (looked in {DEFAULT_MODEL_DIR}"
              + (f" and {a.user_dir})" if a.user_dir else ")"), file=sys.stderr)


def build_parser():
    p = argparse.ArgumentParser(prog="ceph-landmarks", description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="command", required=True)

    d = sub.add_parser("detect", help="detect the 19 landmarks on radiographs")
    d.add_argument("images", nargs="+", help="image files (DICOM, PNG, JPEG, BMP, TIFF, NRRD, ...; or a NAME.radiograph.npz)")
    d.add_argument("--model", help="model file (default: the shipped model)")
    d.add_argument("--spacing", type=_spacing, help="pixel spacing in mm (overrides the file's)")
    d.add_argument("--out-dir", default=".", help="folder for NAME.json, NAME.mrk.json, NAME.png")
    d.add_argument("--device", default="cpu")
    d.add_argument("--no-orientation-check", action="store_true",
                   help="skip the mirrored second pass that recognises left-facing profiles (saves one forward)")
    d.add_argument("--no-overlay", action="store_true", help="do not render NAME.png")
    d.add_argument("--heatmaps", action="store_true",
                   help="also write NAME.heatmaps.npz: the calibrated heatmaps and contours (for the Slicer module)")
    d.add_argument("--progress", action="store_true",
                   help=f"print '{PROGRESS_PREFIX} FRACTION STAGE' lines on stderr as the run advances")
    d.set_defaults(func=_cmd_detect)

    t = sub.add_parser("train", help="train a model on a dataset (ISBI 2015 layout or generic CSV)")
    t.add_argument("--dataset", required=True)
    t.add_argument("--out", required=True,
                   help="model file to write (.safetensors); with --folds the ensemble manifest NAME.json "
                        "(members in NAME.folds/)")
    t.add_argument("--input-size", type=_size, default=(320, 416), help="model input WIDTHxHEIGHT")
    t.add_argument("--epochs", type=int, default=40)
    t.add_argument("--batch-size", type=int, default=4)
    t.add_argument("--lr", type=float, default=1e-3)
    t.add_argument("--holdout", type=int, default=None,
                   help="training images held out for validation/calibration (default 20); with --folds, "
                        "each fold's inner holdout for best-epoch selection (default 10)")
    t.add_argument("--folds", type=int, metavar="K",
                   help="train a K-fold cross-validated ensemble: one member per fold, from scratch, and the "
                        "out-of-fold logits of every training image (--resume continues the unfinished fold)")
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--device", default="auto", help="auto, cpu, cuda or mps")
    t.add_argument("--no-bf16", action="store_true", help="train in float32 (slower)")
    t.add_argument("--imagenet", action="store_true", help="start from ImageNet ResNet-34 weights (downloads)")
    t.add_argument("--ground-truth", default="mean", choices=["mean", "senior", "junior"])
    t.add_argument("--work-dir", help="checkpoint folder (default: OUT.work; with --folds NAME.folds/work)")
    t.add_argument("--resume", action="store_true",
                   help="continue from the last checkpoint (with --folds: skip finished folds)")
    t.add_argument("--init-from", default="", metavar="MODEL",
                   help="fine-tune this model file (e.g. the shipped one) instead of starting from scratch")
    t.add_argument("--augment", default="default", choices=["default", "robust"],
                   help="augmentation: default, or robust (scale 0.7-1.4, crops, windowing, blur, JPEG, noise)")
    t.set_defaults(func=_cmd_train)

    c = sub.add_parser("calibrate", help="refit temperatures and the ERE threshold on the model's holdout")
    c.add_argument("--model", required=True)
    c.add_argument("--dataset", required=True)
    c.add_argument("--ground-truth", default="mean", choices=["mean", "senior", "junior"])
    c.set_defaults(func=_cmd_calibrate)

    e = sub.add_parser("evaluate", help="accuracy and calibration on a test split, with plots")
    e.add_argument("--model")
    e.add_argument("--dataset", required=True)
    e.add_argument("--split", default="test1", choices=["test1", "test2", "train"])
    e.add_argument("--out", required=True, help="folder for metrics.json and the PNG plots")
    e.add_argument("--ground-truth", default="mean", choices=["mean", "senior", "junior"])
    e.add_argument("--device", default="cpu")
    e.set_defaults(func=_cmd_evaluate)

    r = sub.add_parser("report", help="one-page PDF/PNG report: overlay, landmarks, measurements with intervals")
    r.add_argument("image", help="image file (DICOM, PNG, JPEG, BMP, TIFF, NRRD, ...)")
    r.add_argument("--model", help="model file (default: the shipped model)")
    r.add_argument("--spacing", type=_spacing, help="pixel spacing in mm (overrides the file's)")
    r.add_argument("--out-dir", default=".", help="folder for NAME_report.pdf and NAME_report.png")
    r.add_argument("--device", default="cpu")
    r.set_defaults(func=_cmd_report)

    m = sub.add_parser("models", help="list the models: shipped, then imported and trained (one per line: label, path)")
    m.add_argument("--user-dir", help="the per-user model folder holding models.json (default: shipped models only)")
    m.set_defaults(func=_cmd_models)
    return p


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        args.func(args)
    except CephError as e:
        print(f"{ERROR_PREFIX} {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("ceph-landmarks: interrupted", file=sys.stderr)
        return 130
    except OSError as e:  # disk full, permission denied, ...
        print(f"{ERROR_PREFIX} {e.strerror or e}: {e.filename or ''}".rstrip(": "), file=sys.stderr)
        return 2
    return 0
