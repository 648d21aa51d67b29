"""The `ceph-landmarks` command: detect, train, calibrate, evaluate.

User errors (CephError, missing files, bad options) print one line on stderr and exit 2;
nothing half-written is left behind.  SIGINT, SIGTERM and SIGHUP raise Interrupted, so every
atomic write removes its temporary file; the run then exits 128 + the signal number.
"""

import argparse
import contextlib
import math
import re
import signal
import sys
import threading
from pathlib import Path

from .errors import CephError
from .outputs.analysis_cli import add_analyses_command, add_analysis_arguments, analysis_options
from .progress import ERROR_PREFIX, PROGRESS_PREFIX, Progress
from .store import registry
from .store.modelmeta import INPUT_SIZE_MULTIPLE, INPUT_SIZE_RANGE
from .store.registry import SHIPPED_MODELS_DIR as DEFAULT_MODEL_DIR
from .training.refiner_cli import add_train_refiner_command


def default_model_path() -> Path:
    """registry.default_model_path, in DEFAULT_MODEL_DIR (a module global: tests point it elsewhere)."""
    return registry.default_model_path(DEFAULT_MODEL_DIR)


# Accepted option values (the parser refuses the rest with one line naming the option and the range).
EPOCHS_RANGE = (1, 100_000)
BATCH_SIZE_RANGE = (1, 1024)
LR_RANGE = (0.0, 1.0)  # exclusive of 0
HOLDOUT_RANGE = (1, 100_000)  # also checked against the dataset's size when it is read
FOLDS_RANGE = (2, 100)
SEED_RANGE = (0, 2**32 - 1)  # numpy's generators take no negative seed
DEVICES = "cpu, cuda, cuda:N or mps"


class Interrupted(KeyboardInterrupt):
    """Raised by the signal handler main() installs: carries the exit status (128 + signal)."""

    def __init__(self, signum):
        super().__init__(signal.Signals(signum).name)
        self.exit_code = 128 + signum


class _Parser(argparse.ArgumentParser):
    """argparse, but a bad option is one line naming it (argparse prints a usage block), exit 2."""

    def error(self, message):
        self.exit(2, f"{ERROR_PREFIX} {' '.join(message.split())}\n")


def _int_in(lo, hi):
    """An argparse type: an integer in [lo, hi]."""
    def parse(text):
        try:
            value = int(text)
        except ValueError:
            value = None
        if value is None or not lo <= value <= hi:
            raise argparse.ArgumentTypeError(f"expected an integer from {lo} to {hi}, got {text!r}")
        return value
    return parse


def _float_in(lo, hi):
    """An argparse type: a finite number in (lo, hi]."""
    def parse(text):
        try:
            value = float(text)
        except ValueError:
            value = math.nan
        if not (math.isfinite(value) and lo < value <= hi):
            raise argparse.ArgumentTypeError(f"expected a number greater than {lo:g} and at most {hi:g}, got {text!r}")
        return value
    return parse


def _size(text):
    lo, hi = INPUT_SIZE_RANGE
    accepted = f"WIDTHxHEIGHT, multiples of {INPUT_SIZE_MULTIPLE} from {lo} to {hi}, e.g. 320x416"
    try:
        w, h = (int(v) for v in text.lower().replace("x", " ").replace(",", " ").split())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected {accepted}, got {text!r}") from None
    if not all(lo <= v <= hi and v % INPUT_SIZE_MULTIPLE == 0 for v in (w, h)):
        raise argparse.ArgumentTypeError(f"expected {accepted}, got {text!r}")
    return (w, h)


def _spacing(text):
    """One or two finite positive numbers (mm per pixel); images.py checks the plausible range."""
    try:
        values = [float(v) for v in text.replace(",", " ").split()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected millimetres per pixel, got {text!r}") from None
    if len(values) not in (1, 2) or not all(math.isfinite(v) and v > 0 for v in values):
        raise argparse.ArgumentTypeError(f"expected one or two positive numbers, got {text!r}")
    return values[0] if len(values) == 1 else tuple(values)


def _device(allow_auto: bool):
    """An argparse type: a device name this machine has (torch is imported only for cuda and mps)."""
    accepted = ("auto, " if allow_auto else "") + DEVICES

    def parse(text):
        m = re.fullmatch(r"(auto|cpu|mps|cuda)(?::(\d{1,3}))?", text.strip())
        if not m or (m[2] is not None and m[1] != "cuda") or (m[1] == "auto" and not allow_auto):
            raise argparse.ArgumentTypeError(f"expected {accepted}, got {text!r}")
        if m[1] in ("cuda", "mps"):
            _check_device_exists(m[1], int(m[2] or 0), text)
        return text.strip()
    return parse


def _check_device_exists(kind, index, text):
    import torch

    if kind == "mps":
        available = bool(getattr(torch.backends, "mps", None) and torch.backends.mps.is_available())
        if not available:
            raise argparse.ArgumentTypeError(f"no such device {text!r}: this machine has no MPS (Apple GPU)")
        return
    n = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if index >= n:
        have = f"cuda:0 to cuda:{n - 1}" if n else "no CUDA device"
        raise argparse.ArgumentTypeError(f"no such device {text!r}: this machine has {have}")


def _cmd_train(a):
    from dataclasses import asdict

    from .training.augment import AugmentSettings
    from .training.distributed import from_environment
    from .training.loop import TrainConfig, train

    holdout = a.holdout if a.holdout is not None else (10 if a.folds is not None else 20)
    cfg = TrainConfig(
        dataset=a.dataset, out=a.out, input_size=a.input_size, epochs=a.epochs, batch_size=a.batch_size,
        lr=a.lr, holdout=holdout, seed=a.seed, device=a.device, bf16=not a.no_bf16,
        imagenet=a.imagenet, ground_truth=a.ground_truth, work_dir=a.work_dir or "",
        augment=asdict({"robust": AugmentSettings.robust(), "none": AugmentSettings.off()}.get(a.augment,
                                                                                                AugmentSettings())),
        init_from=a.init_from,
    )
    from tqdm import tqdm

    log = lambda m: tqdm.write(m, file=sys.stderr)  # noqa: E731  (above the training's bar on a terminal)
    report = Progress(lines=a.progress, bar=False)  # the bar on a terminal: the training loop's own
    procs = from_environment()  # several processes under torchrun (training/distributed.py)
    if a.folds is not None:
        from .training.folds import train_folds

        if procs.distributed:
            raise CephError("--folds trains its members one after another on one device: run it without torchrun "
                            "(docs/training.md)")
        path = train_folds(cfg, a.folds, resume=a.resume, log=log, report=report)
    else:
        path = train(cfg, resume=a.resume, log=log, report=report)
    if procs.main:
        print(path)


def _cmd_calibrate(a):
    from .training.calibration import calibrate_file

    if a.refiner:
        from .training.refiner_calibration import calibrate_refiner

        with Progress(lines=a.progress) as report:
            calibrate_refiner(a.model, a.refiner, a.dataset, ground_truth=a.ground_truth, out=a.out, log=report.write,
                              progress=report)
        return
    with Progress(lines=a.progress) as report:
        calibrate_file(a.model, a.dataset, ground_truth=a.ground_truth, log=report.write, out=a.out,
                       progress=report)


def _refiner(a, model_path, base: bool = False):
    """The second stage, loaded and checked, or None: `--refine FILE`; `auto`, the one beside the model
    (registry.refiner_beside; an error if there is none); `none`, the first stage alone; not given, the
    model's default (registry.default_refiner: the per-user folder's for these weights, else beside it).
    CephError, one line, for a missing or bad file.  Called before any image is read."""
    from .detection.refinement import REFINE_BESIDE, REFINE_NONE
    from .store.refinerfile import load_refiner

    choice = getattr(a, "refine", None)
    if choice == REFINE_NONE:
        return None
    if choice is None:  # base: the model is adapted from, so an adaptation's own choice does not bind
        path = registry.default_refiner(model_path, adapted_choice=not base)
        return None if path is None else load_refiner(path, a.device)
    path = Path(choice)
    if choice == REFINE_BESIDE:
        path = registry.refiner_beside(model_path)
        if not path.is_file():
            raise CephError(f"--refine {REFINE_BESIDE}: no refiner beside the model (looked for {path})")
    elif path.is_dir():
        raise CephError(f"--refine {path} is a folder, not a refiner file")
    return load_refiner(path, a.device)


def _cmd_detect(a):
    from .outputs.batch import detect_files

    model = registry.model_path_or_download(a.model) if a.model else default_model_path()  # NAME: fetched once
    options = analysis_options(a)  # checked before any image is read
    refiner = _refiner(a, model)  # so is the second stage
    with Progress(lines=a.progress, bar=len(a.images) > 1) as report:
        warn = lambda m: report.write(f"{ERROR_PREFIX} {m}")  # noqa: E731
        written = detect_files(a.images, model, a.out_dir, a.spacing, a.device, on_error=warn,
                               orientation_check=not a.no_orientation_check, overlay=not a.no_overlay,
                               heatmaps=a.heatmaps, progress=report, analysis_options=options, refiner=refiner)
    for out in written:
        print(out)


def _add_progress_option(parser) -> None:
    """--progress: `PROGRESS_PREFIX FRACTION STAGE` lines on stderr (what the Slicer module reads); without
    it a long command draws a bar with an ETA when stderr is a terminal, and is quiet in a pipe."""
    parser.add_argument("--progress", action="store_true",
                        help=f"print '{PROGRESS_PREFIX} FRACTION STAGE' lines on stderr as the run advances "
                             "(instead of the bar drawn on a terminal)")


def _add_refine_option(parser) -> None:
    """--refine: the second stage; by default registry.default_refiner's (the user folder's, else beside)."""
    parser.add_argument("--refine", metavar="REFINER",
                        help="the second stage (full-resolution crops): a refiner file (ceph-landmarks "
                             "train-refiner); 'auto' for MODEL.refiner.safetensors beside the model; 'none' for the "
                             "first stage alone.  Default: MODEL.refiner.safetensors in the per-user model folder "
                             "($CEPH_LANDMARKS_MODELS_DIR or ~/.local/share/ceph-landmarks/models) when it was "
                             "trained for these weights, else the one beside the model (not for a clinic "
                             "adaptation fitted without it).  Points, ERE, P(error > 4 mm), flags, regions "
                             "and measurement intervals then read the combined coarse + fine map")


def _cmd_evaluate(a):
    from .memory import limit_heap_fragmentation
    from .training.evaluate import evaluate

    limit_heap_fragmentation()  # image after image: without it the heap grows about 30 MB an image
    model = a.model or default_model_path()
    refiner = _refiner(a, model)
    with Progress(lines=a.progress) as report:
        m = evaluate(model, a.dataset, a.split, a.out, ground_truth=a.ground_truth,
                     device=a.device, progress=report, refiner=refiner)
    print(f"{a.split}: MRE {m['mre_mm']:.2f} mm, SDR 2 mm {m['sdr']['2.0']:.1f} %, ECE {m['ece']:.2f}")


def _cmd_report(a):
    from .outputs.batch import report_file

    options = analysis_options(a)
    model = a.model or default_model_path()
    refiner = _refiner(a, model)  # before the image is read
    with Progress(lines=a.progress) as report:
        written = report_file(a.image, model, a.out_dir, a.spacing, a.device,
                              progress=report, analysis_options=options, refiner=refiner)
    for out in written:
        print(out)


def _cmd_adapt(a):
    from .clinic.adaptation import adapt_file

    model = a.model or default_model_path()
    refiner = _refiner(a, model, base=True)
    with Progress(lines=a.progress) as report:
        rec = adapt_file(model, a.dataset, a.out, split=a.split,
                         methods=tuple(m.strip() for m in a.methods.split(",") if m.strip()), device=a.device,
                         report_dir=a.report_dir, progress=report, refiner=refiner)
    before, after = rec["cv_before"], rec["cv_after"]
    print(f"adapted to {rec['n_images']} clinic images ({rec['method']}): cross-validated MRE "
          f"{before['mre_mm']:.2f} -> {after['mre_mm']:.2f} mm, 90 % regions holding the truth "
          f"{before['coverage_90_percent']:.0f} -> {after['coverage_90_percent']:.0f} %", file=sys.stderr)
    print(a.out)


def _cmd_models(a):
    if a.user_dir and Path(a.user_dir).exists() and not Path(a.user_dir).is_dir():
        raise CephError(f"--user-dir {a.user_dir} is not a folder")
    if a.download:
        from .progress import progress_line
        from .store.download import default_user_dir

        show = lambda f, stage: print(progress_line(f, stage), file=sys.stderr, flush=True)  # noqa: E731
        reg = registry.ModelRegistry(a.user_dir or default_user_dir(), shipped_dir=DEFAULT_MODEL_DIR)
        print(reg.download(a.download, progress=show if a.progress else None).path)
        return
    entries = registry.ModelRegistry(a.user_dir, shipped_dir=DEFAULT_MODEL_DIR).models() if a.user_dir \
        else registry.shipped_models(DEFAULT_MODEL_DIR)
    for e in entries:
        print(f"{e.label}\t{e.path}")
    _list_refiner_downloads(a.user_dir)
    if not entries:
        print(f"ceph-landmarks: no models (looked in {DEFAULT_MODEL_DIR}"
              + (f" and {a.user_dir})" if a.user_dir else ")"), file=sys.stderr)


def _list_refiner_downloads(user_dir) -> None:
    """`models`: a line per listed refiner download, saying which model it refines and whether it lies in the
    per-user folder (--user-dir, else the one detect looks in): its path there, or the address it comes from."""
    from .store.download import default_user_dir

    reg = registry.ModelRegistry(user_dir or default_user_dir(), shipped_dir=DEFAULT_MODEL_DIR)
    for d, path in reg.refiner_downloads():
        state = "downloaded" if path else f"not downloaded: ceph-landmarks models --download {d.name}"
        print(f"{d.name} {d.version} (second stage of {d.refines}, {state})\t{path or d.url}")


def _cmd_worker(a):
    from .worker.serve import serve

    serve(main, a.idle_timeout)


def build_parser():
    p = _Parser(prog="ceph-landmarks", description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="command", required=True)

    d = sub.add_parser("detect", help="detect the 19 landmarks on radiographs")
    d.add_argument("images", nargs="+",
                   help="image files (DICOM, PNG, JPEG, BMP, TIFF, NRRD, ...; or a NAME.radiograph.npz)")
    d.add_argument("--model", help="model file (default: the shipped model)")
    d.add_argument("--spacing", type=_spacing, help="pixel spacing in mm (overrides the file's)")
    d.add_argument("--out-dir", default=".", help="folder for NAME.json, NAME.mrk.json, NAME.png")
    d.add_argument("--device", default="cpu", type=_device(False), help=DEVICES)
    d.add_argument("--no-orientation-check", action="store_true",
                   help="assume a right-facing profile: never run the mirrored pass (which runs only when the "
                        "first pass is not clearly right-facing)")
    d.add_argument("--no-overlay", action="store_true", help="do not render NAME.png")
    d.add_argument("--heatmaps", action="store_true",
                   help="also write NAME.heatmaps.npz: the calibrated heatmaps and contours (for the Slicer module)")
    _add_refine_option(d)
    _add_progress_option(d)
    add_analysis_arguments(d)
    d.set_defaults(func=_cmd_detect)

    t = sub.add_parser("train", help="train a model on a dataset (ISBI 2015 layout or generic CSV)")
    t.add_argument("--dataset", required=True)
    t.add_argument("--out", required=True,
                   help="model file to write (.safetensors); with --folds the ensemble manifest NAME.json "
                        "(members in NAME.folds/)")
    t.add_argument("--input-size", type=_size, default=(320, 416), help="model input WIDTHxHEIGHT")
    t.add_argument("--epochs", type=_int_in(*EPOCHS_RANGE), default=40)
    t.add_argument("--batch-size", type=_int_in(*BATCH_SIZE_RANGE), default=4)
    t.add_argument("--lr", type=_float_in(*LR_RANGE), default=1e-3)
    t.add_argument("--holdout", type=_int_in(*HOLDOUT_RANGE), default=None,
                   help="training images held out for validation/calibration (default 20); with --folds, "
                        "each fold's inner holdout for best-epoch selection (default 10)")
    t.add_argument("--folds", type=_int_in(*FOLDS_RANGE), metavar="K",
                   help="train a K-fold cross-validated ensemble: one member per fold, from scratch, and the "
                        "out-of-fold logits of every training image (--resume continues the unfinished fold)")
    t.add_argument("--seed", type=_int_in(*SEED_RANGE), default=0)
    t.add_argument("--device", default="auto", type=_device(True), help=f"auto, {DEVICES}")
    t.add_argument("--no-bf16", action="store_true", help="train in float32 (slower)")
    t.add_argument("--imagenet", action="store_true", help="start from ImageNet ResNet-34 weights (downloads)")
    t.add_argument("--ground-truth", default="mean", choices=["mean", "senior", "junior"])
    t.add_argument("--work-dir", help="checkpoint folder (default: OUT.work; with --folds NAME.folds/work)")
    t.add_argument("--resume", action="store_true",
                   help="continue from the last checkpoint (with --folds: skip finished folds)")
    t.add_argument("--init-from", default="", metavar="MODEL",
                   help="fine-tune this model file (e.g. the shipped one) instead of starting from scratch")
    t.add_argument("--augment", default="default", choices=["default", "robust", "none"],
                   help="augmentation: default, robust (scale 0.7-1.4, crops, windowing, blur, JPEG, noise), or none")
    _add_progress_option(t)
    t.set_defaults(func=_cmd_train)

    c = sub.add_parser("calibrate", help="refit temperatures and the ERE threshold on the model's holdout")
    c.add_argument("--model", required=True)
    c.add_argument("--dataset", required=True)
    c.add_argument("--ground-truth", default="mean", choices=["mean", "senior", "junior"])
    c.add_argument("--out", help="where to write the calibration: a sidecar NAME.json beside the weights (default: "
                                 "the --model sidecar, or WEIGHTS-STEM.calibration.json), or a .safetensors file "
                                 "written whole (the --model file itself to rewrite it)")
    c.add_argument("--refiner", help="fit the second stage's flag threshold and region masses (on the combined map, "
                                     "the refiner's held-out images) into this refiner file (or --out) instead of "
                                     "the model's settings; after recalibrating the model, recalibrate its refiner")
    _add_progress_option(c)
    c.set_defaults(func=_cmd_calibrate)

    e = sub.add_parser("evaluate", help="accuracy and calibration on a test split, with plots")
    e.add_argument("--model")
    e.add_argument("--dataset", required=True)
    e.add_argument("--split", default="test1", choices=["test1", "test2", "train"])
    e.add_argument("--out", required=True, help="folder for metrics.json and the PNG plots")
    e.add_argument("--ground-truth", default="mean", choices=["mean", "senior", "junior"])
    e.add_argument("--device", default="cpu", type=_device(False), help=DEVICES)
    _add_refine_option(e)
    _add_progress_option(e)
    e.set_defaults(func=_cmd_evaluate)

    r = sub.add_parser("report", help="PDF/PNG report: an overview page (overlay, landmarks, the named "
                                      "analyses' key rows), then a page per analysis (table, "
                                      "deviation chart, tracing)")
    r.add_argument("image", help="image file (DICOM, PNG, JPEG, BMP, TIFF, NRRD, ...)")
    r.add_argument("--model", help="model file (default: the shipped model)")
    r.add_argument("--spacing", type=_spacing, help="pixel spacing in mm (overrides the file's)")
    r.add_argument("--out-dir", default=".", help="folder for NAME_report.pdf and NAME_report.png")
    r.add_argument("--device", default="cpu", type=_device(False), help=DEVICES)
    _add_refine_option(r)
    _add_progress_option(r)
    add_analysis_arguments(r)
    r.set_defaults(func=_cmd_report)

    ad = sub.add_parser("adapt", help="adapt a model to a clinic's 10-20 annotated radiographs: conventions, "
                                      "temperatures, conformal regions, flags (cross-validated)")
    ad.add_argument("--model", help="base model file (default: the shipped model); never overwritten")
    ad.add_argument("--dataset", required=True, help="the clinic's annotated images (generic CSV or ISBI layout)")
    ad.add_argument("--out", required=True, help="adapted model to write: a .safetensors file, or a .json sidecar "
                                                 "(kilobytes beside the base weights unless a fine-tune is chosen)")
    ad.add_argument("--split", default="train", help="the dataset's rows to use (default: train, or all rows "
                                                     "of a CSV without a split column)")
    ad.add_argument("--methods", default="none,offsets,fine-tune",
                    help="what cross-validation chooses from (default none,offsets,fine-tune)")
    ad.add_argument("--report-dir", help="folder for report.md and its PNGs (default: OUT without .safetensors, "
                                         "plus .report)")
    ad.add_argument("--device", default="cpu", type=_device(False), help=DEVICES)
    _add_refine_option(ad)
    _add_progress_option(ad)
    ad.set_defaults(func=_cmd_adapt)

    m = sub.add_parser("models", help="list the models: shipped, then imported and trained (one per line: label, "
                                      "path), then the listed second stages (refiners) to download")
    m.add_argument("--user-dir", help="the per-user model folder holding models.json (default: shipped models "
                                      "only; with --download $CEPH_LANDMARKS_MODELS_DIR or "
                                      "~/.local/share/ceph-landmarks/models)")
    m.add_argument("--download", metavar="NAME", help="fetch a listed downloadable model or refiner into the per-user "
                                                      "folder, verify its SHA-256 and print its path")
    m.add_argument("--progress", action="store_true", help=f"with --download, '{PROGRESS_PREFIX} FRACTION STAGE' lines")
    m.set_defaults(func=_cmd_models)

    w = sub.add_parser("worker", help="run detect jobs read from stdin (one JSON line each) with the model kept "
                                      "loaded: the Slicer module's Detect (CephLandmarksLib/worker/serve.py)")
    w.add_argument("--idle-timeout", type=_float_in(0.0, 1e7), default=900.0, metavar="S",
                   help="exit after S seconds without a job (default 900); it also exits when stdin closes")
    w.set_defaults(func=_cmd_worker)
    add_analyses_command(sub)
    add_train_refiner_command(sub)  # training/refiner_cli.py (issue 29)
    return p


INTERRUPT_SIGNALS = ("SIGINT", "SIGTERM", "SIGHUP")


def _raise_interrupted(signum, frame):
    """Signal handler: further signals are ignored while the clean-up runs, then Interrupted unwinds
    the stack, so every atomic_write removes its temporary file."""
    for name in INTERRUPT_SIGNALS:
        if hasattr(signal, name):
            signal.signal(getattr(signal, name), signal.SIG_IGN)
    raise Interrupted(signum)


@contextlib.contextmanager
def _signals_interrupt():
    """SIGINT, SIGTERM and SIGHUP raise Interrupted for the duration (main thread only; the previous
    handlers are restored afterwards, so in-process callers such as the tests keep theirs)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    signums = [getattr(signal, n) for n in INTERRUPT_SIGNALS if hasattr(signal, n)]
    previous = {s: signal.getsignal(s) for s in signums}
    for s in signums:
        signal.signal(s, _raise_interrupted)
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler if handler is not None else signal.SIG_DFL)


def _one_line(text) -> str:
    return " ".join(str(text).split())


def main(argv=None) -> int:
    """Run one sub-command; returns the exit status: 0, 2 for a user error or a bad option (one line
    on stderr), 128 + N for signal N."""
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as e:  # --help (0) or a bad option (2, its line already printed)
        return e.code if isinstance(e.code, int) else 2
    with _signals_interrupt():
        try:
            args.func(args)
        except CephError as e:
            print(f"{ERROR_PREFIX} {_one_line(e)}", file=sys.stderr)
            return 2
        except KeyboardInterrupt as e:
            print(f"ceph-landmarks: interrupted{f' ({e})' if isinstance(e, Interrupted) else ''}", file=sys.stderr)
            return getattr(e, "exit_code", 128 + signal.SIGINT)
        except MemoryError:
            print(f"{ERROR_PREFIX} out of memory", file=sys.stderr)
            return 2
        except OSError as e:  # disk full, permission denied, ...
            where = f": {e.filename}" if e.filename else ""
            print(f"{ERROR_PREFIX} {_one_line(e.strerror or e)}{where}", file=sys.stderr)
            return 2
    return 0
