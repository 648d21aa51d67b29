"""Reading radiographs: any 2D image SimpleITK reads, with its pixel spacing."""

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from .errors import CephError

DEFAULT_SPACING_MM = 0.1
# Formats whose files carry a physical pixel spacing; for the others SimpleITK reports 1.0.
_SPACING_FORMATS = (".nrrd", ".nhdr", ".mha", ".mhd", ".nii", ".nii.gz")
_DICOM_SPACING_TAGS = (
    ("0028|0030", "PixelSpacing"),
    ("0018|1164", "ImagerPixelSpacing"),
    ("0018|2010", "NominalScannedPixelSpacing"),
)


@dataclass
class Radiograph:
    pixels: np.ndarray  # (H, W) float32, grey, as stored (not normalised)
    spacing_mm: tuple[float, float]  # (x, y) millimetres per pixel
    spacing_source: str  # "user", "dicom:PixelSpacing", "file", or "assumed"
    path: str = ""
    origin_lps: tuple = (0.0, 0.0, 0.0)  # physical position of pixel (0, 0), as the file says
    direction_lps: tuple = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0)  # 3x3, row-major

    @property
    def size(self) -> tuple[int, int]:
        return (self.pixels.shape[1], self.pixels.shape[0])


def _is_dicom(path: Path) -> bool:
    if path.suffix.lower() in (".dcm", ".dicom"):
        return True
    try:
        with open(path, "rb") as f:
            f.seek(128)
            return f.read(4) == b"DICM"
    except OSError:
        return False


def _dicom_spacing(reader):
    for tag, name in _DICOM_SPACING_TAGS:
        if reader.HasMetaDataKey(tag):
            try:
                row_mm, col_mm = (float(v) for v in reader.GetMetaData(tag).split("\\")[:2])
            except ValueError:
                continue
            if row_mm > 0 and col_mm > 0:
                return (col_mm, row_mm), f"dicom:{name}"
    return None


def user_spacing(spacing_mm) -> tuple[float, float]:
    """(x, y) mm per pixel from a spacing the user gave (one number or a pair); CephError unless positive."""
    s = np.broadcast_to(np.asarray(spacing_mm, dtype=float), (2,))
    if not (np.isfinite(s).all() and (s > 0).all()):
        raise CephError(f"spacing must be positive millimetres, got {spacing_mm}")
    return float(s[0]), float(s[1])


def read_radiograph(path, spacing_mm=None) -> Radiograph:
    """Read a 2D radiograph (or a one-slice volume) as grey float32.

    spacing_mm: a number or (x, y) pair overriding the file's spacing.  Files without
    a spacing (PNG, JPEG, BMP, TIFF, DICOM without spacing tags) get 0.1 mm, marked
    "assumed".  DICOM MONOCHROME1 images are inverted so that bone is bright.
    """
    path = Path(path)
    if not path.is_file():
        raise CephError(f"image not found: {path}")
    if path.name.endswith(RADIOGRAPH_SUFFIX):
        return _read_radiograph_file(path, spacing_mm)
    reader = sitk.ImageFileReader()
    reader.SetFileName(str(path))
    try:
        reader.ReadImageInformation()
        image = reader.Execute()
    except RuntimeError as e:
        first = str(e).strip().splitlines()[-1] if str(e).strip() else "unknown format"
        raise CephError(f"cannot read image {path}: not a readable image file ({first[:160]})") from None

    array = sitk.GetArrayFromImage(image)  # (z, y, x[, c]) or (y, x[, c])
    n_comp = image.GetNumberOfComponentsPerPixel()
    if n_comp > 1:
        array = array[..., :3].astype(np.float32).mean(axis=-1)
    if image.GetDimension() == 3:
        if array.shape[0] != 1:
            raise CephError(
                f"{path} is a 3D volume with {array.shape[0]} slices; a radiograph must be a single 2D image"
            )
        array = array[0]
    if array.ndim != 2 or min(array.shape) < 16:
        raise CephError(f"{path} is not a 2D image (array shape {array.shape})")
    pixels = array.astype(np.float32)
    if not np.isfinite(pixels).all():
        raise CephError(f"{path} contains NaN or infinite pixel values")

    found = None
    if _is_dicom(path):
        found = _dicom_spacing(reader)
        if reader.HasMetaDataKey("0028|0004") and "MONOCHROME1" in reader.GetMetaData("0028|0004"):
            pixels = pixels.max() - pixels
    elif str(path).lower().endswith(_SPACING_FORMATS):
        found = (tuple(float(s) for s in image.GetSpacing()[:2]), "file")

    if spacing_mm is not None:
        spacing, source = user_spacing(spacing_mm), "user"
    elif found is not None:
        spacing, source = found
    else:
        spacing, source = (DEFAULT_SPACING_MM, DEFAULT_SPACING_MM), "assumed"
    dim = image.GetDimension()
    origin = tuple(image.GetOrigin()) + (0.0,) * (3 - dim)
    d = np.eye(3)
    d[:dim, :dim] = np.reshape(image.GetDirection(), (dim, dim))
    return Radiograph(pixels, spacing, source, str(path), origin, tuple(d.ravel()))


# A Radiograph saved as it is (pixels, spacing and where the spacing came from, name, LPS
# placement): how the Slicer module hands a volume to the detection process without a
# format round trip changing the spacing's meaning (an "assumed" spacing stays assumed).
RADIOGRAPH_SUFFIX = ".radiograph.npz"


def save_radiograph(path, radiograph: Radiograph) -> None:
    with open(path, "wb") as f:
        np.savez(f, pixels=np.asarray(radiograph.pixels, dtype=np.float32),
                 spacing_mm=np.asarray(radiograph.spacing_mm, dtype=np.float64),
                 spacing_source=np.array(radiograph.spacing_source), path=np.array(radiograph.path),
                 origin_lps=np.asarray(radiograph.origin_lps, dtype=np.float64),
                 direction_lps=np.asarray(radiograph.direction_lps, dtype=np.float64))


def _read_radiograph_file(path: Path, spacing_mm=None) -> Radiograph:
    try:
        with np.load(path, allow_pickle=False) as z:
            rad = Radiograph(z["pixels"].astype(np.float32), tuple(float(v) for v in z["spacing_mm"]),
                             str(z["spacing_source"]), str(z["path"]) or str(path),
                             tuple(float(v) for v in z["origin_lps"]), tuple(float(v) for v in z["direction_lps"]))
    except (OSError, ValueError, KeyError):
        raise CephError(f"cannot read {path}: not a radiograph file written by CephLandmarks") from None
    if rad.pixels.ndim != 2 or min(rad.pixels.shape) < 16 or not np.isfinite(rad.pixels).all():
        raise CephError(f"{path}: the radiograph's pixels are not a finite 2D image")
    if spacing_mm is not None:
        rad.spacing_mm, rad.spacing_source = user_spacing(spacing_mm), "user"
    return rad


def normalise(pixels: np.ndarray) -> np.ndarray:
    """Robust intensity normalisation to about [0, 1] (1st and 99th percentiles), any bit depth."""
    lo, hi = np.percentile(pixels, [1.0, 99.0])
    if hi <= lo:
        hi = lo + 1.0
    return np.clip((pixels - lo) / (hi - lo), -0.5, 1.5).astype(np.float32)


FRAMING_PHYSICAL = "physical"  # scaled to the model's mm per pixel (the spacing is known)
FRAMING_FIT = "fit-width"  # scaled to fit the model's canvas (the spacing is unknown)


def framing_for(radiograph: Radiograph, model_mm_per_px=None) -> str:
    """Physical framing when the spacing is known (not "assumed") and the model has a scale."""
    if model_mm_per_px is None or radiograph.spacing_source == "assumed":
        return FRAMING_FIT
    return FRAMING_PHYSICAL


def model_frame(radiograph: Radiograph, model_size, model_mm_per_px=None, mirror_x=False):
    from .geometry import ModelFrame

    if framing_for(radiograph, model_mm_per_px) == FRAMING_PHYSICAL:
        return ModelFrame.physical(radiograph.size, radiograph.spacing_mm, model_size, model_mm_per_px, mirror_x)
    return ModelFrame.fit(radiograph.size, model_size).mirrored(mirror_x)


def model_input(radiograph: Radiograph, model_size, model_mm_per_px=None, mirror_x=False):
    """(model input tensor (1, H, W), ModelFrame): normalise, then frame the image in the canvas.

    Without `model_mm_per_px` (training): scale to fit, pad right/bottom.  With it and a
    known spacing: resample to the model's mm per pixel, centred (see ModelFrame.physical).
    """
    from .geometry import to_model_input

    frame = model_frame(radiograph, model_size, model_mm_per_px, mirror_x)
    return to_model_input(normalise(radiograph.pixels), frame), frame
