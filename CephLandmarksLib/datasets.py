"""Datasets of annotated radiographs: the ISBI 2015 layout and a generic CSV layout.

ISBI 2015:  DIR/RawImage/{TrainingData,Test1Data,Test2Data}/NNN.bmp|jpg
            DIR/AnnotationsByMD/{400_senior,400_junior}/NNN.txt   (first 19 "x,y" lines)
Generic:    DIR/landmarks.csv with a header `image,x1,y1,...,x19,y19[,spacing_mm][,split]`,
            image paths relative to DIR, coordinates in pixels, split = train|test.
"""

import csv
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .errors import CephError
from .landmarks import N_LANDMARKS

ISBI_SPLITS = {"train": "TrainingData", "test1": "Test1Data", "test2": "Test2Data"}
ISBI_SPACING_MM = 0.1
GENERIC_CSV = "landmarks.csv"
_IMAGE_SUFFIXES = (".bmp", ".jpg", ".jpeg", ".png", ".tif", ".tiff")


@dataclass
class Sample:
    id: str
    image_path: Path
    landmarks_px: np.ndarray  # (19, 2) x, y in image pixels
    spacing_mm: tuple[float, float] | None  # None: take it from the image file


def is_isbi(root) -> bool:
    return (Path(root) / "RawImage").is_dir() and (Path(root) / "AnnotationsByMD").is_dir()


def read_isbi_annotation(path, n=N_LANDMARKS) -> np.ndarray:
    """First n "x,y" lines of an ISBI annotation file, as an (n, 2) float array."""
    path = Path(path)
    if not path.is_file():
        raise CephError(f"missing annotation file: {path}")
    points = []
    for line_no, line in enumerate(path.read_text(errors="replace").splitlines()[:n], 1):
        try:
            x, y = (float(v) for v in line.strip().split(",")[:2])
        except ValueError:
            raise CephError(f"{path}, line {line_no}: expected 'x,y', got {line.strip()!r}") from None
        points.append((x, y))
    if len(points) < n:
        raise CephError(f"{path} has {len(points)} landmark lines, {n} are needed")
    return np.array(points)


def load_isbi(root, split: str, ground_truth: str = "mean") -> list[Sample]:
    """One ISBI split; ground truth = the mean of the two doctors, or 'senior' / 'junior'."""
    root = Path(root)
    if split not in ISBI_SPLITS:
        raise CephError(f"unknown ISBI split {split!r}; choose one of {', '.join(ISBI_SPLITS)}")
    if ground_truth not in ("mean", "senior", "junior"):
        raise CephError(f"ground truth must be mean, senior or junior, not {ground_truth!r}")
    image_dir = root / "RawImage" / ISBI_SPLITS[split]
    if not image_dir.is_dir():
        raise CephError(f"ISBI split folder not found: {image_dir}")
    images = sorted(p for p in image_dir.iterdir() if p.suffix.lower() in _IMAGE_SUFFIXES)
    if not images:
        raise CephError(f"no images in {image_dir}")
    samples = []
    for image in images:
        doctors = ("senior", "junior") if ground_truth == "mean" else (ground_truth,)
        marks = [read_isbi_annotation(root / "AnnotationsByMD" / f"400_{d}" / f"{image.stem}.txt") for d in doctors]
        samples.append(Sample(image.stem, image, np.mean(marks, axis=0), (ISBI_SPACING_MM,) * 2))
    return samples


def load_generic(root, split: str | None = None) -> list[Sample]:
    """Images listed in DIR/landmarks.csv; `split` keeps the rows of that split (if the column exists)."""
    root = Path(root)
    table = root / GENERIC_CSV
    if not table.is_file():
        raise CephError(f"{root} is neither an ISBI 2015 folder nor has a {GENERIC_CSV}")
    with open(table, newline="") as f:
        rows = list(csv.DictReader(f))
    need = ["image"] + [f"{a}{i}" for i in range(1, N_LANDMARKS + 1) for a in "xy"]
    if not rows or any(c not in rows[0] for c in need):
        raise CephError(f"{table} needs the columns image, x1, y1, ..., x{N_LANDMARKS}, y{N_LANDMARKS}")
    samples = []
    for line_no, row in enumerate(rows, 2):
        if split is not None and "split" in row and row["split"].strip() != split:
            continue
        path = root / row["image"].strip()
        if not path.is_file():
            raise CephError(f"{table}, line {line_no}: image not found: {path}")
        try:
            xy = np.array([[float(row[f"x{i}"]), float(row[f"y{i}"])] for i in range(1, N_LANDMARKS + 1)])
            spacing = float(row["spacing_mm"]) if row.get("spacing_mm", "").strip() else None
        except (TypeError, ValueError):
            raise CephError(f"{table}, line {line_no}: a coordinate or spacing is missing or not a number") from None
        samples.append(Sample(path.stem, path, xy, None if spacing is None else (spacing, spacing)))
    if not samples:
        raise CephError(f"{table} lists no images" + (f" for split {split!r}" if split else ""))
    return samples


def load_dataset(root, split: str = "train", ground_truth: str = "mean") -> list[Sample]:
    root = Path(root)
    if not root.is_dir():
        raise CephError(f"dataset folder not found: {root}")
    if is_isbi(root):
        return load_isbi(root, split, ground_truth)
    return load_generic(root, {"test1": "test", "test2": "test"}.get(split, split))


def split_holdout(samples: list[Sample], n_holdout: int, seed: int = 0):
    """Deterministic (train, holdout) split; the holdout serves validation and calibration."""
    if not 0 < n_holdout < len(samples):
        raise CephError(f"cannot hold out {n_holdout} of {len(samples)} images")
    order = np.random.default_rng(seed).permutation(len(samples))
    held = set(order[:n_holdout].tolist())
    return (
        [s for i, s in enumerate(samples) if i not in held],
        [s for i, s in enumerate(samples) if i in held],
    )


def split_folds(samples: list, k: int, seed: int = 0) -> list[list[int]]:
    """Deterministic K-fold split: K sorted lists of positions in `samples`, each image in exactly one.

    The rule (recorded with the folds): the positions permuted by numpy's default_rng(seed),
    fold i (0-based) takes every K-th of them starting at i, so fold sizes differ by at most one.
    Not stratified.
    """
    if isinstance(k, bool) or not isinstance(k, int) or not 2 <= k <= len(samples):
        raise CephError(f"cannot split {len(samples)} images into {k} folds (need 2 to {len(samples)})")
    order = np.random.default_rng(seed).permutation(len(samples))
    return [sorted(order[i::k].tolist()) for i in range(k)]
