"""`ceph-landmarks train-refiner`: its options and its body (cli.py only registers it).

Torch is imported only when the command runs, so building the parser stays cheap.
"""

import argparse


def _int_at_least(lo):
    def parse(text):
        try:
            value = int(text)
        except ValueError:
            value = None
        if value is None or not lo <= value <= 100_000:
            raise argparse.ArgumentTypeError(f"expected an integer from {lo} to 100000, got {text!r}")
        return value
    return parse


def _positive(text):
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not 0 < value <= 1:
        raise argparse.ArgumentTypeError(f"expected a number greater than 0 and at most 1, got {text!r}")
    return value


def add_train_refiner_command(sub) -> None:
    """Register `train-refiner` on the CLI's sub-parsers."""
    r = sub.add_parser("train-refiner", help="train the second stage (full-resolution crops) behind a model")
    r.add_argument("--model", required=True, help="the base model file (its held-out images stay held out)")
    r.add_argument("--dataset", required=True, help="the dataset the base model was trained on (its train split)")
    r.add_argument("--out", required=True, help="refiner file to write (.safetensors, float16, under 8 MB)")
    r.add_argument("--epochs", type=_int_at_least(1), default=30)
    r.add_argument("--batch-size", type=_int_at_least(2), default=32)
    r.add_argument("--lr", type=_positive, default=2e-3)
    r.add_argument("--crop-size", type=_int_at_least(16), default=128, help="crop pixels a side (multiple of 16)")
    r.add_argument("--threads", type=_int_at_least(0), default=0, help="torch threads (default: torch's)")
    r.add_argument("--ground-truth", default="mean", choices=["mean", "senior", "junior"])
    r.add_argument("--work-dir", help="checkpoint folder (default: OUT.work)")
    r.add_argument("--resume", action="store_true", help="continue from the last checkpoint")
    r.add_argument("--progress", action="store_true",
                   help="print '[progress] FRACTION STAGE' lines on stderr (instead of the bar drawn on a terminal)")
    r.set_defaults(func=run_train_refiner)


def run_train_refiner(a) -> None:
    from .refiner_training import RefinerConfig, train_refiner

    cfg = RefinerConfig(model=a.model, dataset=a.dataset, out=a.out, epochs=a.epochs, batch_size=a.batch_size,
                        lr=a.lr, crop_size=a.crop_size, threads=a.threads, ground_truth=a.ground_truth,
                        work_dir=a.work_dir or "")
    from ..progress import Progress

    with Progress(lines=a.progress) as report:
        path = train_refiner(cfg, resume=a.resume, log=report.write, progress=report)
    print(path)
