"""Clinic adaptation end to end, through the commands a user runs: Test2 plays the clinic.

adapt_benchmark.py scores adapted settings on cached network outputs.  This runs the product
instead: a generic-layout clinic folder is made from ISBI Test2 (one of the adapt benchmark's
20-image splits, 0 unless --split says: its clinic images as `train`, the other 80 as `test`; image
links and a landmarks.csv, under a git-ignored folder: ISBI licence), then

    ceph-landmarks adapt    --dataset CLINIC --out CLINIC/clinic.safetensors   (timed)
    ceph-landmarks evaluate --model BASE or the adapted file --dataset CLINIC --split test1

so the adapted model file is read back and every scored image goes through `detect`'s own
predictor (framing, orientation check, aligned second pass) with the fine-tuned network where
one was chosen.  Prints both models' figures on the 80 images, and how often each chose each
orientation and a second, aligned pass.

    .venv/bin/python benchmarks/studies/adapt_end_to_end.py [--split 0] [--work runs/adapt_end_to_end]

Split 0 chooses offsets, split 1 a fine-tune (as in the benchmark).
"""

import argparse
import csv
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]  # benchmarks/studies/STUDY.py -> the repository root
sys.path.insert(0, str(ROOT))

from CephLandmarksLib.annotations.datasets import load_dataset  # noqa: E402
from CephLandmarksLib.store.modelfile import load_model  # noqa: E402

CLINIC_IMAGES = 20  # the adapt benchmark's 20-image splits
FIGURES = {  # column -> how to read it from evaluate's metrics.json
    "MRE mm": lambda m: f"{m['mre_mm']:.3f}",
    "SDR 2 mm %": lambda m: f"{m['sdr']['2.0']:.1f}",
    "errors > 4 mm flagged %": lambda m: f"{100 * m['flagged_share_of_errors_over_4mm']:.1f}",
    "points ≤ 2 mm flagged %": lambda m: f"{100 * m['flagged_share_of_points_under_2mm']:.1f}",
    "AUC of P(error > 4 mm)": lambda m: f"{m['p_large_error_roc_auc_4mm']:.3f}",
    "orientation": lambda m: str(m["passes"]["orientation"]),
    "aligned images": lambda m: str(m["passes"]["aligned_images"]),
    "flag rule": lambda m: m["flag_rule"],
}


def make_clinic(dataset: Path, work: Path, split: int) -> list:
    """CLINIC/landmarks.csv over links to the Test2 images: the split's clinic images `train`, the rest
    `test`.  Returns the clinic ids."""
    samples = load_dataset(dataset, "test2")
    order = np.random.default_rng(1000 * CLINIC_IMAGES + split).permutation(len(samples))  # as adapt_benchmark draws it
    clinic = {samples[i].id for i in order[:CLINIC_IMAGES]}
    (work / "images").mkdir(parents=True, exist_ok=True)
    rows = []
    for s in samples:
        link = work / "images" / Path(s.image_path).name
        if not link.is_symlink():
            link.symlink_to(Path(s.image_path).resolve())
        xy = [f"{v:.2f}" for p in s.landmarks_px for v in p]
        rows.append([f"images/{link.name}", *xy, s.spacing_mm[0], "train" if s.id in clinic else "test"])
    with open(work / "landmarks.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["image", *[f"{a}{i}" for i in range(1, 20) for a in "xy"], "spacing_mm", "split"])
        w.writerows(rows)
    return sorted(clinic)


def run(*args) -> float:
    """Run `ceph-landmarks ARGS` as a user would; its wall time in seconds (exit on failure)."""
    t0 = time.time()
    done = subprocess.run([sys.executable, "-m", "CephLandmarksLib", *args], cwd=ROOT)
    if done.returncode:
        raise SystemExit(f"ceph-landmarks {args[0]} failed ({done.returncode})")
    return time.time() - t0


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dataset", default=str(ROOT.parent / "shared/data/isbi2015"))
    ap.add_argument("--split", type=int, default=0, help="which of the benchmark's 20-image splits")
    ap.add_argument("--work", default=str(ROOT / "runs/adapt_end_to_end"))
    a = ap.parse_args(argv)
    work = Path(a.work)
    make_clinic(Path(a.dataset), work, a.split)
    model = work / "clinic.safetensors"
    model.unlink(missing_ok=True)  # each run starts from no adapted file and no report
    shutil.rmtree(model.with_suffix(".report"), ignore_errors=True)
    seconds = run("adapt", "--dataset", str(work), "--out", str(model))
    for name, args in (("base", []), ("adapted", ["--model", str(model)])):
        run("evaluate", *args, "--dataset", str(work), "--split", "test1", "--out", str(work / f"eval_{name}"))
    chosen = load_model(model).info.adaptation["method"]
    print(f"adapt on {CLINIC_IMAGES} Test2 images (split {a.split}): {seconds:.0f} s wall, chose {chosen}\n")
    print("| model | " + " | ".join(FIGURES) + " |\n|" + "---|" * (len(FIGURES) + 1))
    for name in ("base", "adapted"):
        m = json.loads((work / f"eval_{name}" / "metrics.json").read_text())
        print(f"| {name} | " + " | ".join(read(m) for read in FIGURES.values()) + " |")


if __name__ == "__main__":
    main()
