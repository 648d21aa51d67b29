"""A clinic's own annotated radiographs, filled one reviewed detection at a time (the Slicer
module's *Add to clinic dataset*), in the generic layout that `datasets.load_generic` reads and
`ceph-landmarks adapt --dataset` takes.  No torch; SimpleITK only to write the image.

    FOLDER/landmarks.csv   image,x1,y1,...,x19,y19,spacing_mm,pixels_sha256
    FOLDER/<id>.nrrd       the radiograph as detection read it

- **The image** is the grey pixel array detection saw (RGB already averaged), written as a
  gzip-compressed NRRD with its pixel spacing and its placement (LPS origin and direction, so it
  lies where the original did when opened in Slicer).  Integer-valued pixels are stored in the
  smallest integer type holding them, others as float32: `images.read_radiograph` gives back the
  same array and spacing (source "file").
- **The CSV** holds the 19 points in image pixels (x = column, y = row, the pixel centre at
  integer values), `spacing_mm` (the spacing detection used, when it is the same along x and y;
  empty otherwise, the NRRD then carries the pair), and `pixels_sha256`.
- **Identity:** two cases are the same radiograph when their pixel content is: the SHA-256 of the
  array's shape and float32 values (`pixels_sha256`), whatever the volume's name, file format or
  spacing.  Adding one already there raises `DuplicateCase` (nothing written); `replace=True`
  (after the user confirmed) replaces that row in place.  Names only keep files apart:
  `<id>.nrrd`, else `<id>-2.nrrd`, ...
- **Whole or nothing:** everything is checked before anything is written; the image is written
  to a temporary file and renamed, then the CSV is rewritten whole (read, change, temporary file,
  rename: the commit).  If the CSV cannot be written the new image is removed.  A crash between
  the two renames leaves at most an image that the CSV does not list, never a half row.
- **Refused, with one line:** a CSV with another header, a point without a position (all 19
  must be placed) or outside the image (0 <= x <= width, 0 <= y <= height, as `load_generic`
  checks), not the 19 ISBI landmarks in order, a non-positive spacing, a non-finite or
  non-2D image.
"""

import csv
import filecmp
import hashlib
import io
import os
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import CephError
from ..files import atomic_write
from ..landmarks import ISBI_LANDMARKS, N_LANDMARKS
from .datasets import GENERIC_CSV

IMAGE_SUFFIX = ".nrrd"
HASH_COLUMN = "pixels_sha256"
CSV_HEADER = (["image"] + [f"{a}{i}" for i in range(1, N_LANDMARKS + 1) for a in "xy"]
              + ["spacing_mm", HASH_COLUMN])
COORDINATE_DECIMALS = 4  # 0.0001 px


class DuplicateCase(CephError):
    """The radiograph is already in the clinic dataset (same pixels); `image` is its file there."""

    def __init__(self, folder, image):
        self.image = image
        super().__init__(f"this radiograph is already in the clinic dataset {folder} as {image}")


@dataclass
class AddedCase:
    image_path: Path  # the image file in the clinic folder
    row: int  # 0-based row of landmarks.csv (after the header)
    replaced: bool  # True: an earlier row of the same radiograph was replaced
    n_images: int  # rows in landmarks.csv now


def pixels_sha256(pixels) -> str:
    """The identity of a radiograph: SHA-256 of 'HxW;' and its grey values as little-endian float32."""
    array = np.ascontiguousarray(np.asarray(pixels, dtype="<f4"))
    h = hashlib.sha256(f"{array.shape[0]}x{array.shape[1]};".encode())
    h.update(array.tobytes())
    return h.hexdigest()


def safe_id(name) -> str:
    """A file-name stem from a volume name: letters, digits, '.', '-' and '_' only."""
    stem = re.sub(r"[^\w.-]+", "_", str(name)).strip("._")[:80]
    return stem or "radiograph"


def read_cases(folder) -> list[dict]:
    """The rows of FOLDER/landmarks.csv as dicts ([] without a CSV); CephError for another header."""
    table = Path(folder) / GENERIC_CSV
    if not table.is_file():
        return []
    try:
        with open(table, newline="", encoding="utf-8") as f:
            rows = list(csv.reader(f))
    except (OSError, UnicodeDecodeError) as e:
        raise CephError(f"{table} cannot be read ({getattr(e, 'strerror', None) or e})") from None
    if not rows:
        return []
    if rows[0] != CSV_HEADER:
        raise CephError(f"{table} was not written by Add to clinic dataset (its header is not "
                        f"image,x1,y1,...,x{N_LANDMARKS},y{N_LANDMARKS},spacing_mm,{HASH_COLUMN}): "
                        "choose another folder")
    cases = []
    for line_no, row in enumerate(rows[1:], 2):
        if not row:
            continue
        if len(row) != len(CSV_HEADER):
            raise CephError(f"{table}, line {line_no}: {len(row)} fields, {len(CSV_HEADER)} expected")
        cases.append(dict(zip(CSV_HEADER, row, strict=True)))
    return cases


def _check_points(points_px, landmark_abbreviations):
    expected = [lm.abbreviation for lm in ISBI_LANDMARKS]
    if landmark_abbreviations is not None and list(landmark_abbreviations) != expected:
        raise CephError("a clinic dataset holds the 19 ISBI landmarks in their order "
                        f"({', '.join(expected)}); these landmarks are {', '.join(landmark_abbreviations)}")
    points = np.asarray(points_px, dtype=float)
    if points.shape != (N_LANDMARKS, 2):
        raise CephError(f"a clinic case needs {N_LANDMARKS} points (x, y), got an array of shape {points.shape}")
    unplaced = [expected[i] for i in range(N_LANDMARKS) if not np.isfinite(points[i]).all()]
    if unplaced:
        raise CephError(f"landmark{'s' if len(unplaced) > 1 else ''} {', '.join(unplaced)} "
                        f"{'have' if len(unplaced) > 1 else 'has'} no position: place all {N_LANDMARKS} points "
                        "before adding the radiograph to the clinic dataset")
    return points


def _check_pixels(pixels):
    array = np.asarray(pixels)
    if array.ndim != 2 or min(array.shape) < 16:
        raise CephError(f"a clinic case needs a 2D grey image, got an array of shape {array.shape}")
    if not np.isfinite(array).all():
        raise CephError("the image contains NaN or infinite values")
    return array


def _check_inside(points, shape):
    """Every point within the image (0 <= x <= width, 0 <= y <= height), as datasets.load_generic requires."""
    h, w = shape
    for (x, y), lm in zip(points, ISBI_LANDMARKS, strict=True):
        if not (0 <= x <= w and 0 <= y <= h):
            raise CephError(f"landmark {lm.abbreviation} ({x:.1f}, {y:.1f}) lies outside the image ({w} x {h} px): "
                            "move it inside before adding the radiograph to the clinic dataset")


def _check_spacing(spacing_mm):
    s = np.broadcast_to(np.asarray(spacing_mm, dtype=float), (2,))
    if not (np.isfinite(s).all() and (s > 0).all()):
        raise CephError(f"the pixel spacing must be positive millimetres, got {spacing_mm}")
    return float(s[0]), float(s[1])


def _storage_array(pixels):
    """The pixels in the smallest integer type that holds them exactly, else float32."""
    array = np.asarray(pixels)
    if np.issubdtype(array.dtype, np.integer) or np.array_equal(array, np.round(array)):
        lo, hi = float(array.min()), float(array.max())
        for dtype in (np.uint8, np.int16, np.uint16, np.int32):
            info = np.iinfo(dtype)
            if info.min <= lo and hi <= info.max:
                return array.astype(dtype)
    return array.astype(np.float32)


def write_image(path, pixels, spacing_mm, origin_lps=None, direction_lps=None) -> None:
    """Write a radiograph as NRRD (gzip) with its spacing, atomically.  With origin and direction
    (LPS, 3x3 row-major, columns = the x, y and normal axes) it is a one-slice 3D image placed in
    space, else a 2D image."""
    import SimpleITK as sitk

    array = _storage_array(pixels)
    sx, sy = _check_spacing(spacing_mm)
    if origin_lps is not None and direction_lps is not None:
        image = sitk.GetImageFromArray(array[None])
        image.SetSpacing((sx, sy, 1.0))
        image.SetOrigin(tuple(float(v) for v in origin_lps))
        image.SetDirection(tuple(float(v) for v in np.asarray(direction_lps, dtype=float).ravel()))
    else:
        image = sitk.GetImageFromArray(array)
        image.SetSpacing((sx, sy))

    def write(tmp):
        writer = sitk.ImageFileWriter()
        writer.SetFileName(str(tmp))
        writer.SetImageIO("NrrdImageIO")  # the temporary name has no .nrrd suffix
        writer.UseCompressionOn()
        writer.Execute(image)

    atomic_write(path, write)


def _csv_text(cases) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(CSV_HEADER)
    for case in cases:
        writer.writerow([case[c] for c in CSV_HEADER])
    return out.getvalue()


def _row(image_name, points, spacing, digest) -> dict:
    row = {"image": image_name, "spacing_mm": repr(spacing[0]) if spacing[0] == spacing[1] else "",
           HASH_COLUMN: digest}
    for i, (x, y) in enumerate(points, 1):
        row[f"x{i}"], row[f"y{i}"] = f"{x:.{COORDINATE_DECIMALS}f}", f"{y:.{COORDINATE_DECIMALS}f}"
    return row


def _free_name(folder, image_id, cases) -> str:
    listed = {c["image"] for c in cases}
    for n in range(1, 10_000):
        name = f"{image_id}{'' if n == 1 else f'-{n}'}{IMAGE_SUFFIX}"
        if name not in listed and not (folder / name).exists():
            return name
    raise CephError(f"no free file name for {image_id} in {folder}")


def find_case(folder, pixels) -> dict | None:
    """The row of the radiograph with these pixels, or None."""
    digest = pixels_sha256(_check_pixels(pixels))
    return next((c for c in read_cases(folder) if c[HASH_COLUMN] == digest), None)


def add_case(folder, image_id, pixels, points_px, spacing_mm, landmark_abbreviations=None, origin_lps=None,
             direction_lps=None, replace=False) -> AddedCase:
    """Add one radiograph and its 19 points (image pixels) to the clinic dataset in `folder`
    (created if needed).  DuplicateCase if the same pixels are there already, unless replace=True,
    which replaces that row (same place in the CSV).  Writes nothing unless all checks pass, and
    leaves the folder as it was if writing fails."""
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise CephError(f"the clinic dataset folder {folder} is a file")
    points = _check_points(points_px, landmark_abbreviations)
    array = _check_pixels(pixels)
    _check_inside(points, array.shape)
    spacing = _check_spacing(spacing_mm)
    digest = pixels_sha256(array)
    cases = read_cases(folder)  # refuses another header before anything is written
    same = [i for i, c in enumerate(cases) if c[HASH_COLUMN] == digest]
    if same and not replace:
        raise DuplicateCase(folder, cases[same[0]]["image"])
    folder.mkdir(parents=True, exist_ok=True)
    name = _free_name(folder, safe_id(image_id), cases)
    newImage = folder / name
    write_image(newImage, array, spacing, origin_lps, direction_lps)
    old = None
    if same:
        index, old = same[0], cases[same[0]]["image"]
        if _same_file(folder / old, newImage):  # the image is unchanged: keep its name
            newImage.unlink()
            name, newImage = old, folder / old
    row = _row(name, points, spacing, digest)
    if same:
        cases = [c for i, c in enumerate(cases) if i not in same[1:]]
        cases[index] = row
    else:
        index = len(cases)
        cases.append(row)
    text = _csv_text(cases)
    try:
        atomic_write(folder / GENERIC_CSV, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))
    except BaseException:
        if name != old:
            newImage.unlink(missing_ok=True)
        raise
    if old is not None and old != name and not any(c["image"] == old for c in cases):
        _remove_quietly(folder / old)  # the replaced row's image; the CSV no longer lists it
    return AddedCase(newImage, index, bool(same), len(cases))


def _same_file(a, b) -> bool:
    try:
        return a.is_file() and filecmp.cmp(a, b, shallow=False)
    except OSError:
        return False


def _remove_quietly(path):
    try:
        os.unlink(path)
    except OSError:
        pass


def case_count(folder) -> int:
    """How many radiographs the clinic dataset in `folder` holds (0 without a CSV)."""
    return len(read_cases(folder))


__all__ = ["AddedCase", "CSV_HEADER", "DuplicateCase", "HASH_COLUMN", "add_case", "case_count", "find_case",
           "pixels_sha256", "read_cases", "safe_id", "write_image"]
