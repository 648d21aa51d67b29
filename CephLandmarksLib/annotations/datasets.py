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

from ..errors import CephError
from ..landmarks import N_LANDMARKS

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


GENERIC_SPLITS = ("train", "test")  # the values the CSV's split column may hold (exactly, lower case)


def is_isbi(root) -> bool:
    return (Path(root) / "RawImage").is_dir() and (Path(root) / "AnnotationsByMD").is_dir()


def image_size(path, where: str = "") -> tuple[int, int]:
    """(width, height) in pixels from the image file's header only (cheap: no pixels decoded);
    CephError naming `where` (e.g. the CSV line listing it) and the file if it cannot be read."""
    import SimpleITK as sitk

    reader = sitk.ImageFileReader()
    reader.SetFileName(str(path))
    try:
        reader.ReadImageInformation()
    except RuntimeError as e:
        reason = next((ln.strip() for ln in str(e).splitlines() if ln.strip() and "sitk::ERROR" in ln), "")
        reason = reason.split("sitk::ERROR:")[-1].strip() or "bad header"
        raise CephError(f"{where + ': ' if where else ''}{path} is not a readable image ({reason})") from None
    size = reader.GetSize()
    return int(size[0]), int(size[1])


def check_points(xy: np.ndarray, size, where: str, image) -> np.ndarray:
    """The (L, 2) landmarks, if every one is a finite point inside the image (0 <= x <= width,
    0 <= y <= height, pixels); else CephError naming `where` (file, line) and the landmark.

    Out-of-image or infinite annotations would otherwise train a wrong model and report errors
    of hundreds of millimetres."""
    w, h = size
    for i, (x, y) in enumerate(np.asarray(xy, dtype=float), 1):
        if not (np.isfinite(x) and np.isfinite(y)):
            raise CephError(f"{where}: landmark {i} is not a finite point ({x:g}, {y:g})")
        if not (0 <= x <= w and 0 <= y <= h):
            raise CephError(f"{where}: landmark {i} ({x:g}, {y:g}) lies outside the image {Path(image).name} "
                            f"({w} x {h} px)")
    return xy


def read_isbi_annotation(path, n=N_LANDMARKS) -> np.ndarray:
    """First n "x,y" lines of an ISBI annotation file, as an (n, 2) float array of finite numbers."""
    path = Path(path)
    if not path.is_file():
        raise CephError(f"missing annotation file: {path}")
    points = []
    for line_no, line in enumerate(path.read_text(encoding="utf-8-sig", errors="replace").splitlines()[:n], 1):
        try:
            x, y = (float(v) for v in line.strip().split(",")[:2])
        except ValueError:
            raise CephError(f"{path}, line {line_no}: expected 'x,y', got {line.strip()[:40]!r}") from None
        if not (np.isfinite(x) and np.isfinite(y)):
            raise CephError(f"{path}, line {line_no}: the point ({x:g}, {y:g}) is not finite")
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
        size = image_size(image)
        marks = []
        for d in doctors:
            annotation = root / "AnnotationsByMD" / f"400_{d}" / f"{image.stem}.txt"
            marks.append(check_points(read_isbi_annotation(annotation), size, str(annotation), image))
        samples.append(Sample(image.stem, image, np.mean(marks, axis=0), (ISBI_SPACING_MM,) * 2))
    return samples


def read_csv_rows(table: Path) -> tuple[list, list]:
    """(header, [(line number, row)]) of a CSV file: UTF-8 with or without a byte-order mark,
    blank lines skipped, every row as long as the header; CephError naming the file and line."""
    try:
        with open(table, newline="", encoding="utf-8-sig") as f:
            reader = csv.reader(f)
            lines = [(reader.line_num, row) for row in reader]
    except UnicodeDecodeError as e:
        raise CephError(f"{table} is not UTF-8 text (byte {e.start}); save it as UTF-8") from None
    except csv.Error as e:
        raise CephError(f"{table} is not a readable CSV file ({e})") from None
    lines = [(n, row) for n, row in lines if any(cell.strip() for cell in row)]
    if not lines:
        raise CephError(f"{table} is empty")
    (_, header), rows = lines[0], lines[1:]
    header = [c.strip() for c in header]
    for n, row in rows:
        if len(row) != len(header):
            raise CephError(f"{table}, line {n}: {len(row)} values, but the header has {len(header)} columns")
    return header, rows


def _number(text, what, where):
    try:
        return float(text)
    except ValueError:
        raise CephError(f"{where}: {what} is not a number ({text.strip()[:20]!r})") from None


def load_generic(root, split: str | None = None) -> list[Sample]:
    """Images listed in DIR/landmarks.csv; `split` keeps the rows of that split (if the column exists).

    Every row is checked, whichever split is asked for: a split value other than GENERIC_SPLITS,
    a missing image, a non-number, a non-positive or non-finite spacing, or a landmark outside
    its image is refused with the file and line, never silently dropped."""
    root = Path(root)
    table = root / GENERIC_CSV
    if not table.is_file():
        raise CephError(f"{root} is neither an ISBI 2015 folder nor has a {GENERIC_CSV}")
    header, rows = read_csv_rows(table)
    need = ["image"] + [f"{a}{i}" for i in range(1, N_LANDMARKS + 1) for a in "xy"]
    missing = [c for c in need if c not in header]
    if missing:
        raise CephError(f"{table} lacks the column(s) {', '.join(missing[:4])}{' ...' if len(missing) > 4 else ''}; "
                        f"it needs image, x1, y1, ..., x{N_LANDMARKS}, y{N_LANDMARKS}")
    samples = []
    for line_no, values in rows:
        row = dict(zip(header, values, strict=True))
        where = f"{table}, line {line_no}"
        row_split = row["split"].strip() if "split" in row else None
        if row_split is not None and row_split not in GENERIC_SPLITS:
            raise CephError(f"{where}: split {row['split']!r} is not one of {', '.join(GENERIC_SPLITS)}")
        path = root / row["image"].strip()
        if not row["image"].strip() or not path.is_file():
            raise CephError(f"{where}: image not found: {path}")
        xy = np.array([[_number(row[f"{a}{i}"], f"{a}{i}", where) for a in "xy"] for i in range(1, N_LANDMARKS + 1)])
        spacing = None
        if row.get("spacing_mm", "").strip():
            spacing = _number(row["spacing_mm"], "spacing_mm", where)
            if not (np.isfinite(spacing) and spacing > 0):
                raise CephError(f"{where}: spacing_mm must be a positive number of millimetres, got {spacing:g}")
        check_points(xy, image_size(path, where), where, path)
        if split is not None and row_split is not None and row_split != split:
            continue
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
