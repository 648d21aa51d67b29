"""A hostile-input corpus of radiograph files, generated (numpy + SimpleITK, nothing copied from data sets).

Each builder writes one file into a folder and returns its path.  Expectations live in
test_hostile_images.py; this module only makes the files.
"""

import re
import struct
from pathlib import Path

import numpy as np
import SimpleITK as sitk

WIDTH, HEIGHT = 160, 200  # at 0.5 mm: 80 x 100 mm, a plausible (small) field of view
# Formats SimpleITK writes, by suffix; the physical ones store a spacing.
PLAIN_FORMATS = (".png", ".jpg", ".bmp", ".tif")
PHYSICAL_FORMATS = (".nrrd", ".mha", ".nii", ".nii.gz", ".dcm")
TRUNCATE_AT = (0.01, 0.1, 0.25, 0.5, 0.75, 0.9, 0.99)


def skull_like(width=WIDTH, height=HEIGHT, seed=0) -> np.ndarray:
    """uint8 (H, W): smooth structure plus noise (JPEG-compressible, not flat)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width]
    centre = np.exp(-((xx - width / 2) ** 2 + (yy - height / 2) ** 2) / (2 * (width / 5) ** 2))
    img = 90 + 50 * np.sin(xx / 17.0) * np.cos(yy / 23.0) + 40 * centre
    return np.clip(img + rng.normal(0, 6, img.shape), 0, 255).astype(np.uint8)


def write_image(path, pixels=None, spacing=None) -> Path:
    """Write a grey image in the format of path's suffix (16-bit for the physical formats)."""
    path = Path(path)
    pixels = skull_like() if pixels is None else pixels
    physical = str(path).endswith(PHYSICAL_FORMATS)
    img = sitk.GetImageFromArray(pixels.astype(np.uint16) * 16 if physical and pixels.dtype == np.uint8 else pixels)
    if spacing is not None:
        img.SetSpacing(spacing if np.ndim(spacing) else (spacing, spacing))
    if str(path).endswith(".dcm"):
        img.SetMetaData("0008|0060", "DX")
    sitk.WriteImage(img, str(path))
    return path


def truncated(folder, ext, fraction) -> Path:
    """A valid image of this format cut to `fraction` of its bytes."""
    src = write_image(Path(folder) / f"whole{ext}", spacing=0.5 if ext in PHYSICAL_FORMATS else None)
    raw = src.read_bytes()
    src.unlink()
    out = Path(folder) / f"cut{int(round(fraction * 100)):02d}{ext}"
    out.write_bytes(raw[:max(1, int(len(raw) * fraction))])
    return out


def bmp_header_only(folder) -> Path:
    src = write_image(Path(folder) / "whole.bmp")
    raw = src.read_bytes()
    src.unlink()
    offset = struct.unpack_from("<I", raw, 10)[0]
    out = Path(folder) / "header_only.bmp"
    out.write_bytes(raw[:offset])
    return out


def overwritten(folder, ext, where, fill, block=4096, seed=0) -> Path:
    """A valid (larger) image with `block` bytes at `where` (fraction of the file) replaced by `fill`
    (a byte, or None for random bytes)."""
    src = write_image(Path(folder) / f"whole{ext}", skull_like(480, 600, seed))
    raw = bytearray(src.read_bytes())
    src.unlink()
    at = int(len(raw) * where)
    n = min(block, len(raw) - at)
    raw[at:at + n] = np.random.default_rng(seed).integers(0, 256, n, dtype=np.uint8).tobytes() if fill is None \
        else bytes([fill]) * n
    out = Path(folder) / f"over{int(where * 100):02d}_{'rand' if fill is None else fill}{ext}"
    out.write_bytes(bytes(raw))
    return out


_PATCHED_SPACING = 0.123456  # written, then replaced in the bytes: its text is long enough for "1e+308"


def _fmt(v: float) -> str:
    if np.isnan(v):
        return "nan"
    if np.isinf(v):
        return "inf" if v > 0 else "-inf"
    return repr(float(v))


def header_spacing(folder, ext, value) -> Path:
    """An image whose header states `value` mm per pixel (NaN, 0, negative and infinite included),
    patched into the bytes SimpleITK wrote where SimpleITK refuses to write such a spacing."""
    folder = Path(folder)
    name = re.sub(r"[^0-9a-z.+-]", "_", _fmt(value))
    out = folder / f"sp_{name}{ext}"
    finite_positive = np.isfinite(value) and value > 0
    if finite_positive and ext != ".nii" and value < 1e30:
        return write_image(out, spacing=value)
    write_image(out, spacing=_PATCHED_SPACING)
    raw = out.read_bytes()
    text = _fmt(value)
    if ext == ".nrrd":
        new = re.sub(rb"space directions: \([^)]*\) \([^)]*\)", f"space directions: ({text},0) (0,{text})".encode(),
                     raw, count=1)
    elif ext == ".mha":
        new = re.sub(rb"ElementSpacing = [^\n]*", f"ElementSpacing = {text} {text}".encode(), raw, count=1)
    elif ext == ".nii":
        b = bytearray(raw)
        f32 = np.float32(value) if not np.isfinite(value) or abs(value) < 3e38 else np.float32(np.sign(value) * np.inf)
        struct.pack_into("<2f", b, 80, f32, f32)  # pixdim[1], pixdim[2]
        struct.pack_into("<h", b, 252, 0)  # qform_code: no qform
        struct.pack_into("<h", b, 254, 0)  # sform_code: no sform; ITK then reads pixdim
        new = bytes(b)
    elif ext == ".dcm":
        m = re.search(rb"\.123456\\\.123456 ?", raw)  # SimpleITK writes ImagerPixelSpacing ".123456\.123456"
        assert m, "no spacing tag in the DICOM file"
        new = raw[:m.start()] + f"{text}\\{text}".encode()[:len(m[0])].ljust(len(m[0])) + raw[m.end():]
    else:
        raise ValueError(ext)
    assert new != raw, (ext, value)
    out.write_bytes(new)
    return out


def dicom(folder, photometric: str, pixels=None) -> Path:
    """A DICOM file with this PhotometricInterpretation (SimpleITK always writes MONOCHROME2: the tag's
    value, of the same length, is patched in the bytes)."""
    pixels = (np.arange(HEIGHT * WIDTH).reshape(HEIGHT, WIDTH) % 4000).astype(np.uint16) if pixels is None else pixels
    out = Path(folder) / f"{photometric.lower()}.dcm"
    img = sitk.GetImageFromArray(pixels)
    img.SetSpacing((0.25, 0.25))
    img.SetMetaData("0008|0060", "DX")
    sitk.WriteImage(img, str(out))
    raw = out.read_bytes()
    assert raw.count(b"MONOCHROME2 ") == 1
    out.write_bytes(raw.replace(b"MONOCHROME2 ", photometric.ljust(12).encode()))
    return out


def grey_alpha_png(folder) -> Path:
    out = Path(folder) / "grey_alpha.png"
    g = skull_like()
    sitk.WriteImage(sitk.GetImageFromArray(np.stack([g, np.full_like(g, 255)], -1), isVector=True), str(out))
    return out


def rgba_png(folder) -> Path:
    out = Path(folder) / "rgba.png"
    g = skull_like()
    sitk.WriteImage(sitk.GetImageFromArray(np.stack([g, g, g, np.full_like(g, 255)], -1), isVector=True), str(out))
    return out


def png_claiming(folder, width, height, name="huge.png") -> Path:
    """A small PNG whose header says width x height (its data is a stub): the header alone must refuse it."""
    import zlib

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    data = (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\x00" * 4096))
            + chunk(b"IEND", b""))
    out = Path(folder) / name
    out.write_bytes(data)
    return out


def renamed(folder, real_ext, name) -> Path:
    """A valid image of format real_ext saved under another name (content decides, not the suffix)."""
    src = write_image(Path(folder) / f"tmp_src{real_ext}")
    out = Path(folder) / name
    src.rename(out)
    return out


def tiff_with_unsorted_tags(folder) -> Path:
    """A valid TIFF whose first two directory entries are swapped: libtiff warns ("tags are not sorted")
    and reads it; the warning must neither refuse the image nor reach stderr."""
    out = write_image(Path(folder) / "unsorted.tif")
    b = bytearray(out.read_bytes())
    endian = "<" if b[:2] == b"II" else ">"
    ifd = struct.unpack_from(endian + "I", b, 4)[0]
    first, second = ifd + 2, ifd + 14
    b[first:first + 12], b[second:second + 12] = b[second:second + 12], b[first:first + 12]
    out.write_bytes(bytes(b))
    return out


def symlink_loop(folder, names=("a.png", "b.png")) -> list:
    """Two symbolic links naming each other (`ln -s b.png a.png; ln -s a.png b.png`): opening either
    fails with ELOOP, and pathlib's resolve() raises RuntimeError("Symlink loop")."""
    first, second = (Path(folder) / n for n in names)
    first.symlink_to(second.name)
    second.symlink_to(first.name)
    return [first, second]
