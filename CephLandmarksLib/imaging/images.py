"""Reading radiographs: any 2D image SimpleITK reads, with its pixel spacing, checked before use.

Refused with one line naming the file (CephError), before anything is decoded where possible:
- what is not a regular, non-empty file (a folder, a FIFO, a device: never opened);
- images no lateral cephalogram can be: under MIN_SIDE_PX pixels a side, over MAX_PIXELS pixels
  (from the header), a spacing outside MIN_SPACING_MM..MAX_SPACING_MM, a field of view over
  MAX_FIELD_MM a side, a header spacing, origin or orientation that is not finite;
- corrupt or truncated files: decoder errors, decoder warnings that say the data is corrupt
  (libjpeg decodes a truncated JPEG to grey with only a warning), and uncompressed pixel data
  (BMP, NIfTI) shorter than the header says.
The format is recognised from the file's first bytes, not its name.  What the C/C++ decoders
print on stderr is captured: it never reaches the user, and names the problem when a file is refused.
SimpleITK is imported on first read, not with this module: Slicer imports the module's constants
at start-up, and SimpleITK costs about 0.1-0.2 s there.
"""

import gzip
import os
import re
import stat
import struct
import sys
import tempfile
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import CephError
from ..progress import STREAMS_LOCK

DEFAULT_SPACING_MM = 0.1
# What a lateral cephalogram can be: one definition, used by every reader, --spacing and the Slicer volume.
# Cephalostat detectors have 0.07-0.2 mm pixels, film scans 0.04-0.25 mm (100-600 dpi).  Finer than
# 0.03 mm is no radiograph; coarser than 1 mm cannot resolve landmarks that are scored to 2 mm.
MIN_SPACING_MM = 0.03
MAX_SPACING_MM = 1.0
# The largest cephalometric film is 24 x 30 cm; 600 mm a side is twice that.  A larger field of view
# means a wrong spacing, and physical framing would resample the image to an enormous size.
MAX_FIELD_MM = 600.0
# 50 megapixels: 2.7 times a 43 x 43 cm detector at 0.1 mm (18.5 MP) and 11 times an ISBI image
# (4.6 MP); more costs gigabytes of float32 copies for nothing.  Checked from the header, before decoding.
MAX_PIXELS = 50_000_000
MIN_SIDE_PX = 16
MAX_ORIGIN_MM = 1e6  # an image placed over a kilometre away is a garbled header, not a patient
# ITK reports 1 x 1 mm for a NRRD, MetaImage or NIfTI file whose header stores no usable spacing:
# such a spacing is treated as absent (assumed), never as "from the file".
ITK_NO_SPACING = (1.0, 1.0)
# Formats whose files carry a physical pixel spacing; for the others SimpleITK reports 1.0.
_SPACING_FORMATS = (".nrrd", ".nhdr", ".mha", ".mhd", ".nii", ".nii.gz")
_DICOM_SPACING_TAGS = (
    ("0028|0030", "PixelSpacing"),
    ("0018|1164", "ImagerPixelSpacing"),
    ("0018|2010", "NominalScannedPixelSpacing"),
)
# First bytes -> the ImageIO that reads them, whatever the name says (a JPEG named .png is read as JPEG).
_MAGIC_IO = (
    (0, b"\x89PNG\r\n\x1a\n", "PNGImageIO"),
    (0, b"\xff\xd8\xff", "JPEGImageIO"),
    (0, b"BM", "BMPImageIO"),
    (0, b"II*\x00", "TIFFImageIO"),
    (0, b"MM\x00*", "TIFFImageIO"),
    (128, b"DICM", "GDCMImageIO"),
    (0, b"NRRD", "NrrdImageIO"),
)
_HEAD_BYTES = 512
# Decoder messages that mean the data is corrupt or incomplete even when the decoder returns an image.
# Any decoder: words of missing or damaged data (libtiff's and libpng's other warnings are harmless).
_CORRUPT_WORDS = ("corrupt", "premature end", "truncat", "not read completely", "fread got only", "short read",
                  "read error", "unexpected end", "crc error")
# libjpeg warns (and goes on, filling with grey) only about damaged entropy-coded data.
_JPEG_CORRUPT_WORDS = _CORRUPT_WORDS + ("bogus", "invalid", "huffman", "inconsistent", "unsupported marker")
_NIFTI1_HEADER_BYTES = 348
_GZIP_MAGIC = b"\x1f\x8b"
_PNG_GREY_ALPHA = 4  # PNG colour type: SimpleITK cannot read it ("Unknown PixelType")


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


# --- plausibility: one check each, shared by files, --spacing and the Slicer volume -------------------

def _mm_text(s) -> str:
    s = np.asarray(s, dtype=float).ravel()
    return f"{s[0]:g}" if s.size == 1 or s[0] == s[1] else f"{s[0]:g} x {s[1]:g}"


def user_spacing(spacing_mm, what: str = "spacing") -> tuple[float, float]:
    """(x, y) mm per pixel from one number or a pair; CephError naming `what` unless it is a spacing
    a lateral cephalogram can have (MIN_SPACING_MM to MAX_SPACING_MM).  The one check for a given spacing."""
    try:
        s = np.broadcast_to(np.asarray(spacing_mm, dtype=float), (2,))
    except (TypeError, ValueError):
        raise CephError(f"{what} must be one or two positive millimetres per pixel, got {spacing_mm!r}") from None
    if not (np.isfinite(s).all() and (s > 0).all()):
        raise CephError(f"{what} must be positive millimetres per pixel, got {_mm_text(s)}")
    if not ((s >= MIN_SPACING_MM).all() and (s <= MAX_SPACING_MM).all()):
        raise CephError(f"{what} {_mm_text(s)} mm per pixel is outside the range of a lateral cephalogram "
                        f"({MIN_SPACING_MM:g} to {MAX_SPACING_MM:g} mm)")
    return float(s[0]), float(s[1])


def check_field_of_view(path, size, spacing_mm) -> None:
    """CephError when (width, height) pixels at this spacing are wider or taller than MAX_FIELD_MM."""
    mm = np.asarray(size, dtype=float) * np.asarray(spacing_mm, dtype=float)
    if not (mm <= MAX_FIELD_MM).all():
        raise CephError(f"{path}: {size[0]} x {size[1]} pixels at {_mm_text(spacing_mm)} mm per pixel make "
                        f"{mm[0]:.0f} x {mm[1]:.0f} mm; a cephalogram is at most {MAX_FIELD_MM:g} mm a side "
                        "(wrong spacing?)")


def check_pixel_count(path, size) -> None:
    """CephError, before decoding, for a size (from the header) no radiograph has."""
    n = int(np.prod([int(v) for v in size], dtype=np.float64))
    if n > MAX_PIXELS:
        raise CephError(f"{path}: {' x '.join(str(int(v)) for v in size)} pixels ({n / 1e6:.0f} megapixels) is more "
                        f"than the {MAX_PIXELS / 1e6:.0f}-megapixel limit for a radiograph")
    if len(size) < 2 or min(int(v) for v in size[:2]) < MIN_SIDE_PX:
        raise CephError(f"{path}: {' x '.join(str(int(v)) for v in size)} pixels is too small for a radiograph "
                        f"(at least {MIN_SIDE_PX} a side)")


def check_placement(path, origin, direction) -> None:
    """CephError unless the origin is finite and within MAX_ORIGIN_MM, and the direction cosines are a
    rotation (ITK reads a garbled MetaImage TransformMatrix as all zeros: every point would land on the origin)."""
    origin = np.asarray(origin, dtype=float)
    d = np.asarray(direction, dtype=float)
    n = int(round(np.sqrt(d.size)))
    if not (np.isfinite(origin).all() and (np.abs(origin) <= MAX_ORIGIN_MM).all()):
        raise CephError(f"{path}: the file's origin ({', '.join(f'{v:g}' for v in origin)}) is not a position")
    if n * n != d.size or not np.isfinite(d).all() or not np.allclose(d.reshape(n, n) @ d.reshape(n, n).T, np.eye(n),
                                                                      atol=1e-3):
        raise CephError(f"{path}: the file's orientation (direction cosines) is not a rotation")


# --- the file itself ------------------------------------------------------------------------------------

def _file_kind(mode: int) -> str:
    """'' for a regular file, else what it is, in words."""
    for test, kind in ((stat.S_ISDIR, "a folder"), (stat.S_ISFIFO, "a named pipe (FIFO)"),
                       (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
                       (stat.S_ISSOCK, "a socket"), (stat.S_ISREG, "")):
        if test(mode):
            return kind
    return "not a regular file"


def check_image_file(path) -> int:
    """The size in bytes of an existing, non-empty regular file; CephError saying what `path` is
    otherwise.  Uses stat only: a FIFO or device is never opened (reading one could block forever)."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise CephError(f"image not found: {path}") from None
    except OSError as e:
        raise CephError(f"cannot read image {path}: {e.strerror or e}") from None
    kind = _file_kind(st.st_mode)
    if kind:
        raise CephError(f"{path} is {kind}, not an image file")
    if st.st_size == 0:
        raise CephError(f"{path} is empty (0 bytes), not an image")
    return st.st_size


def _head(path: Path) -> bytes:
    try:
        with open(path, "rb") as f:
            return f.read(_HEAD_BYTES)
    except OSError as e:
        raise CephError(f"cannot read image {path}: {e.strerror or e}") from None


def _sniffed_io(head: bytes):
    """The ImageIO for the file's first bytes, or None (let ITK decide: MetaImage, NIfTI, ...)."""
    for offset, magic, io in _MAGIC_IO:
        if head[offset:offset + len(magic)] == magic:
            return io
    return None


def _is_dicom(path: Path, head: bytes = b"") -> bool:
    return path.suffix.lower() in (".dcm", ".dicom") or head[128:132] == b"DICM"


class NativeOutput:
    """Captures what C/C++ libraries write to stdout and stderr inside a `with` block (ITK and HDF5 on
    stderr, the bundled libjpeg on stdout) into `.text`, so that it never reaches the user.
    Where a file descriptor cannot be duplicated, that stream is left alone."""

    _FDS = (1, 2)

    def __enter__(self):
        STREAMS_LOCK.acquire()  # the redirection is process-wide: no other thread writes a line meanwhile
        self.text, self._saved = "", []
        try:
            self._buf = tempfile.TemporaryFile()
        except BaseException:
            STREAMS_LOCK.release()
            raise
        for fd, stream in zip(self._FDS, (sys.stdout, sys.stderr), strict=True):
            try:
                if stream is not None:
                    stream.flush()
                self._saved.append((fd, os.dup(fd)))
                os.dup2(self._buf.fileno(), fd)
            except (OSError, ValueError, AttributeError):
                pass
        return self

    def __exit__(self, *exc):
        try:
            for fd, saved in self._saved:
                os.dup2(saved, fd)
                os.close(saved)
            self._buf.seek(0)
            self.text = self._buf.read(1 << 16).decode("utf-8", "replace")
            self._buf.close()
        finally:
            STREAMS_LOCK.release()
        return False


def _native_reason(text: str) -> str:
    """The first informative line a decoder printed (ITK's source locations and HDF5's probing dropped)."""
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith(("WARNING: In ", "ERROR: In ", "HDF5-DIAG", "#0", "major:", "minor:", ",")):
            continue
        return re.sub(r"^\w+ ?\(0x[0-9a-fA-F]+\): ", "", line)[:160]
    return ""


def _itk_reason(error: RuntimeError) -> str:
    """The last line of an ITK exception, without its object address."""
    lines = [ln.strip() for ln in str(error).strip().splitlines() if ln.strip()]
    last = lines[-1] if lines else "unknown format"
    return re.sub(r"^(ITK ERROR: )?\w+ ?\(0x[0-9a-fA-F]+\): ", "", re.sub(r"^sitk::ERROR: ", "", last))[:160]


def _corrupt(text: str, words=_CORRUPT_WORDS) -> str:
    """The decoder's line saying the data is corrupt or truncated, or ''."""
    for line in text.splitlines():
        if any(w in line.lower() for w in words):
            return _native_reason(line) or line.strip()[:160]
    return ""


def _nifti1_header(path: Path, head: bytes):
    """(endian, header bytes) of a NIfTI-1 file (plain or gzipped), or None."""
    if head[:2] == _GZIP_MAGIC:
        try:
            with gzip.open(path, "rb") as f:
                head = f.read(_NIFTI1_HEADER_BYTES)
        except (OSError, EOFError):
            return None
    if len(head) < _NIFTI1_HEADER_BYTES:
        return None
    for endian in "<>":
        if struct.unpack_from(endian + "i", head, 0)[0] == _NIFTI1_HEADER_BYTES:
            return endian, head
    return None


def _gzip_length(path: Path) -> int:
    """The uncompressed length of a gzip file, read to its end so that zlib checks its CRC and length:
    ITK decodes a truncated or corrupt .nii.gz without a word.  CephError if it is damaged."""
    n = 0
    try:
        with gzip.open(path, "rb") as f:
            while chunk := f.read(1 << 22):
                n += len(chunk)
    except (OSError, EOFError, zlib.error) as e:
        raise CephError(f"cannot read image {path}: truncated or corrupt gzip data ({str(e)[:120]})") from None
    return n


def _missing_bytes(head: bytes, nifti, data_size: int) -> int:
    """How many bytes a BMP or NIfTI-1 file lacks of the pixel data its header declares (0 if
    none, or not such a file): these decoders read short data without a word.  data_size: the
    file's size, uncompressed."""
    if head[:2] == b"BM" and len(head) >= 38:
        offset = struct.unpack_from("<I", head, 10)[0]
        w, h, _, bpp, compression, image_bytes = struct.unpack_from("<iiHHII", head, 18)
        rle = compression in (1, 2)
        need = offset + (image_bytes if rle else ((abs(w) * bpp + 31) // 32) * 4 * abs(h))
        return max(0, need - data_size)
    if nifti is not None:
        endian, hdr = nifti
        dim = struct.unpack_from(endian + "8h", hdr, 40)
        bitpix = struct.unpack_from(endian + "h", hdr, 72)[0]
        vox_offset = struct.unpack_from(endian + "f", hdr, 108)[0]
        n = int(np.prod([max(1, d) for d in dim[1:1 + max(0, min(dim[0], 7))]], dtype=np.float64))
        need = int(vox_offset if np.isfinite(vox_offset) else 0) + n * max(bitpix, 0) // 8
        return max(0, need - data_size)
    return 0


def _png_ihdr(head: bytes):
    """(width, height, colour type) of a PNG's header, or None."""
    if head[:8] != b"\x89PNG\r\n\x1a\n" or head[12:16] != b"IHDR" or len(head) < 26:
        return None
    w, h = struct.unpack_from(">II", head, 16)
    return w, h, head[25]


def _read_grey_alpha_png(path: Path) -> np.ndarray:
    """A grey + alpha PNG (which SimpleITK cannot read) as its grey channel, via matplotlib (Pillow)."""
    from matplotlib.image import imread

    try:
        with NativeOutput():
            array = np.asarray(imread(path))
    except Exception as e:  # Pillow raises many types on a broken file
        raise CephError(f"cannot read image {path}: not a readable PNG ({str(e)[:160]})") from None
    return array[..., 0] if array.ndim == 3 else array


# --- reading --------------------------------------------------------------------------------------------

def _check_header(path, reader) -> None:
    """Refuse from the header alone: too many pixels or slices, and a spacing, origin or orientation
    that is not finite (ITK would fail later, or give NaN positions)."""
    size = reader.GetSize()
    check_pixel_count(path, size)
    if len(size) == 3 and size[2] != 1:
        raise CephError(f"{path} is a 3D volume with {size[2]} slices; a radiograph must be a single 2D image")
    if len(size) > 3:
        raise CephError(f"{path} has {len(size)} dimensions; a radiograph must be a single 2D image")
    spacing = np.asarray(reader.GetSpacing()[:2], dtype=float)
    if not (np.isfinite(spacing).all() and (spacing > 0).all()):
        raise CephError(f"{path}: the file's pixel spacing ({_mm_text(spacing)} mm) is not a valid spacing")
    check_placement(path, reader.GetOrigin(), reader.GetDirection())


def _read_itk(path: Path, head: bytes, file_size: int):
    """(image, reader) decoded by SimpleITK, or CephError naming what is wrong with the file."""
    import SimpleITK as sitk

    reader = sitk.ImageFileReader()
    reader.SetFileName(str(path))
    io = _sniffed_io(head)
    if io:
        reader.SetImageIO(io)
    failure, image = None, None
    with NativeOutput() as native:
        try:
            reader.ReadImageInformation()
            _check_header(path, reader)
            image = reader.Execute()
        except RuntimeError as e:
            failure = e
    if failure is not None:
        reason = _corrupt(native.text, _JPEG_CORRUPT_WORDS) or _itk_reason(failure)
        if "No such file" in reason:  # MetaImage reports a truncated file with a stale errno
            reason = _native_reason(native.text) or "truncated or corrupt"
        raise CephError(f"cannot read image {path}: not a readable image file ({reason})")
    corrupt = _corrupt(native.text, _JPEG_CORRUPT_WORDS if io == "JPEGImageIO" else _CORRUPT_WORDS)
    if corrupt:
        raise CephError(f"cannot read image {path}: corrupt or truncated image data ({corrupt})")
    data_size = _gzip_length(path) if head[:2] == _GZIP_MAGIC else file_size
    missing = _missing_bytes(head, _nifti1_header(path, head), data_size)
    if missing:
        raise CephError(f"cannot read image {path}: truncated ({missing} bytes of pixel data missing)")
    return image, reader


def _file_spacing(path: Path, head: bytes, reader, image):
    """((x, y) mm, source) as the file stores it, or None when it stores none (ITK_NO_SPACING
    included); CephError when it stores something that is not a spacing (NaN, 0, garbage)."""
    if _is_dicom(path, head):
        found = _dicom_spacing(reader)
        bad = _bad_dicom_spacing(reader) if found is None else None
        if bad:
            raise CephError(f"{path}: the DICOM {bad[0]} '{bad[1]}' is not a pixel spacing (give --spacing)")
        return found
    nifti = _nifti1_header(path, head)
    if nifti is not None:
        endian, hdr = nifti
        pixdim = np.asarray(struct.unpack_from(endian + "2f", hdr, 80), dtype=float)
        if not (np.isfinite(pixdim).all() and (pixdim > 0).all()):
            raise CephError(f"{path}: the NIfTI pixel spacing (pixdim {_mm_text(pixdim)}) is not a valid spacing "
                            "(give --spacing)")
    if nifti is not None or str(path).lower().endswith(_SPACING_FORMATS) or head[:4] == b"NRRD":
        spacing = tuple(float(s) for s in image.GetSpacing()[:2])
        return None if spacing == ITK_NO_SPACING else (spacing, "file")
    return None


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


def _bad_dicom_spacing(reader):
    """(tag name, value) of the first spacing tag present, when none holds a valid spacing."""
    for tag, name in _DICOM_SPACING_TAGS:
        if reader.HasMetaDataKey(tag):
            return name, reader.GetMetaData(tag).strip()
    return None


def _grey(array: np.ndarray, n_components: int, path) -> np.ndarray:
    """(H, W) float32 from (z, y, x[, c]) or (y, x[, c]): colour averaged, alpha dropped."""
    if n_components > 1:
        array = array[..., :3].astype(np.float32).mean(axis=-1)
    if array.ndim == 3:
        array = array[0]
    if array.ndim != 2 or min(array.shape) < MIN_SIDE_PX:
        raise CephError(f"{path} is not a 2D image (array shape {array.shape})")
    pixels = array.astype(np.float32)
    if not np.isfinite(pixels).all():
        raise CephError(f"{path} contains NaN or infinite pixel values")
    return pixels


def read_radiograph(path, spacing_mm=None) -> Radiograph:
    """Read a 2D radiograph (or a one-slice volume) as grey float32; CephError for anything else.

    spacing_mm: a number or (x, y) pair overriding the file's spacing.  Files without
    a spacing (PNG, JPEG, BMP, TIFF, DICOM without spacing tags, and headers with ITK's
    default 1 x 1 mm) get DEFAULT_SPACING_MM, marked "assumed".  DICOM MONOCHROME1 images
    come back from SimpleITK (GDCM) already inverted, so bone is bright: they are not
    inverted again.  See the module's docstring for what is refused.
    """
    path = Path(path)
    file_size = check_image_file(path)
    if path.name.endswith(RADIOGRAPH_SUFFIX):
        return _read_radiograph_file(path, spacing_mm)
    head = _head(path)
    ihdr = _png_ihdr(head)
    if ihdr is not None and ihdr[2] == _PNG_GREY_ALPHA:
        check_pixel_count(path, ihdr[:2])
        pixels, found, origin, direction = _grey(_read_grey_alpha_png(path), 1, path), None, (0.0,) * 3, np.eye(3)
    else:
        import SimpleITK as sitk

        image, reader = _read_itk(path, head, file_size)
        pixels = _grey(sitk.GetArrayFromImage(image), image.GetNumberOfComponentsPerPixel(), path)
        found = _file_spacing(path, head, reader, image) if spacing_mm is None else None
        dim = image.GetDimension()
        origin = tuple(image.GetOrigin()) + (0.0,) * (3 - dim)
        direction = np.eye(3)
        direction[:dim, :dim] = np.reshape(image.GetDirection(), (dim, dim))

    if spacing_mm is not None:
        spacing, source = user_spacing(spacing_mm), "user"
    elif found is not None:
        spacing, source = user_spacing(found[0], f"{path}: the file's spacing"), found[1]
    else:
        spacing, source = (DEFAULT_SPACING_MM, DEFAULT_SPACING_MM), "assumed"
    if source != "assumed":
        check_field_of_view(path, (pixels.shape[1], pixels.shape[0]), spacing)
    return Radiograph(pixels, spacing, source, str(path), origin, tuple(direction.ravel()))


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
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile):
        raise CephError(f"cannot read {path}: not a radiograph file written by CephLandmarks") from None
    if rad.pixels.ndim != 2 or min(rad.pixels.shape) < MIN_SIDE_PX or not np.isfinite(rad.pixels).all():
        raise CephError(f"{path}: the radiograph's pixels are not a finite 2D image")
    check_pixel_count(path, rad.size)
    if spacing_mm is not None:
        rad.spacing_mm, rad.spacing_source = user_spacing(spacing_mm), "user"
    else:
        rad.spacing_mm = user_spacing(rad.spacing_mm, f"{path}: the stored spacing")
    check_placement(path, rad.origin_lps, rad.direction_lps)
    if rad.spacing_source != "assumed":
        check_field_of_view(path, rad.size, rad.spacing_mm)
    return rad


def normalise(pixels: np.ndarray) -> np.ndarray:
    """Robust intensity normalisation to about [0, 1] (1st and 99th percentiles), any bit depth."""
    lo, hi = np.percentile(pixels, [1.0, 99.0])
    if hi <= lo:
        hi = lo + 1.0
    return np.clip((pixels - lo) / (hi - lo), -0.5, 1.5).astype(np.float32)
