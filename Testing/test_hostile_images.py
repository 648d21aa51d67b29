"""Hostile inputs to `ceph-landmarks detect` (and `report`): a generated corpus (hostile_images_corpus.py)
run through cli.main in one process, plus real processes for signals and batches.

For every case: exit 0 with complete outputs, or 2 with one line on stderr naming the file or option;
no traceback; nothing else on stderr (decoder and NumPy warnings included); no temporary file and no
partial set of outputs left; the input files unchanged (SHA-256 before and after).
"""

import hashlib
import json
import os
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import hostile_images_corpus as C
import numpy as np
import pytest
import SimpleITK as sitk

from CephLandmarksLib import cli
from CephLandmarksLib.detection import predictor as detect_module
from CephLandmarksLib.errors import CephError
from CephLandmarksLib.imaging.images import MAX_FIELD_MM, MAX_PIXELS, MAX_SPACING_MM, MIN_SPACING_MM, read_radiograph

ERROR = cli.ERROR_PREFIX
OUTPUT_SUFFIXES = (".json", ".mrk.json", ".png")
ROOT = os.geteuid() == 0 if hasattr(os, "geteuid") else False


# --- fixtures: an untrained model (fast), loaded once, one torch thread ---------------------------------

@pytest.fixture(scope="module")
def model(tmp_path_factory):
    """An untrained 64 x 64 model: its flat heatmaps are what NumPy warns about."""
    from CephLandmarksLib.network.model import build_model
    from CephLandmarksLib.store.modelfile import ModelInfo, save_model

    path = tmp_path_factory.mktemp("hostile_model") / "untrained.safetensors"
    save_model(path, build_model(), ModelInfo(name="untrained", input_size=(64, 64), model_mm_per_px=1.5))
    return path


@pytest.fixture(scope="module")
def _detectors():
    return {}


@pytest.fixture(autouse=True)
def fast_detector(monkeypatch, _detectors):
    """One torch thread (2 shared cores), and the detector loaded once per model (the real load is
    exercised by the subprocess tests)."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    real = detect_module.LandmarkDetector

    def cached(model_path, device="cpu", orientation_check=True, align=True, refiner=None):
        key = (str(model_path), device, orientation_check, align, None if refiner is None else refiner.sha256)
        if key not in _detectors:
            _detectors[key] = real(model_path, device, orientation_check, align, refiner=refiner)
        return _detectors[key]

    monkeypatch.setattr(detect_module, "LandmarkDetector", cached)
    yield
    torch.set_num_threads(threads)


# --- the checks every case gets --------------------------------------------------------------------------

def _hashes(folder) -> dict:
    """SHA-256 of every regular file under folder (FIFOs and devices are never opened)."""
    out = {}
    for root, _, files in os.walk(folder):
        for name in files:
            p = Path(root) / name
            if stat.S_ISREG(os.lstat(p).st_mode):
                out[str(p)] = hashlib.sha256(p.read_bytes()).hexdigest()
    return out


def _strict_json(path):
    def no_constant(name):
        raise AssertionError(f"{path}: bare {name} in JSON")
    return json.loads(Path(path).read_text(), parse_constant=no_constant)


def run_cli(capfd, *argv):
    """(exit code, stdout, stderr) of cli.main, stderr at the file-descriptor level (decoders included)."""
    try:
        code = cli.main([str(a) for a in argv])
    except SystemExit as e:  # argparse
        code = e.code
    out, err = capfd.readouterr()
    return code, out, err


def assert_clean(code, out, err, out_dir, watched, before, expect, needle, suffixes=OUTPUT_SUFFIXES):
    """The rules of every case (see the module's docstring)."""
    assert code in (0, 2), (code, err)
    assert "Traceback" not in err and "Warning" not in err, err
    leftovers = [p for p in Path(out_dir).rglob("*") if p.name.endswith(".part")] if Path(out_dir).is_dir() else []
    assert not leftovers, leftovers
    if Path(out_dir).is_dir():
        written = [p for p in Path(out_dir).iterdir() if p.name.endswith(".mrk.json") and str(p) not in before]
        for markups in written:  # a complete set per image, or none
            stem = markups.name[: -len(".mrk.json")]
            for s in suffixes:
                assert (Path(out_dir) / f"{stem}{s}").is_file(), f"{stem}{s} missing beside {markups.name}"
            assert len(_strict_json(Path(out_dir) / f"{stem}.json")["landmarks"]) == 19
    after = _hashes(watched)
    assert {k: after.get(k) for k in before} == before, "an input file changed"
    if expect == "ok":
        assert code == 0 and err == "", err
        printed = out.split()
        assert printed and all(Path(p).is_file() for p in printed)
        stem = Path(printed[0]).name[: -len(".json")]
        assert {f"{stem}{s}" for s in suffixes} <= {Path(p).name for p in printed}
        for p in printed:  # odd-but-valid images: no point may come out unflagged (untrained, flat maps)
            if p.endswith(".json") and not p.endswith(".mrk.json"):
                assert all(lm["flagged"] and lm["flag_reasons"] for lm in _strict_json(p)["landmarks"])
    else:
        lines = err.strip().splitlines()
        assert code == 2, (code, err)
        assert len(lines) == 1 and lines[0].startswith(ERROR), err
        for n in needle if isinstance(needle, tuple) else (needle,):
            assert n in lines[0], (n, lines[0])


def detect_case(capfd, model, folder, images, expect, needle="", extra=(), out_dir=None):
    """Run detect on `images` and check the case; returns (code, out, err)."""
    folder = Path(folder)
    out_dir = Path(out_dir) if out_dir is not None else folder / "out"
    watched = folder / "in"  # the inputs (and any file put beside the outputs before the run)
    before = _hashes(watched)
    code, out, err = run_cli(capfd, "detect", *images, "--model", model, "--out-dir", out_dir, *extra)
    suffixes = OUTPUT_SUFFIXES if "--no-overlay" not in extra else OUTPUT_SUFFIXES[:2]
    assert_clean(code, out, err, out_dir, watched, before, expect, needle, suffixes)
    return code, out, err


def _case_dir(tmp_path):
    d = tmp_path / "in"
    d.mkdir()
    return d


# --- family 1: truncated and corrupted files -------------------------------------------------------------

@pytest.mark.parametrize("fraction", C.TRUNCATE_AT)
@pytest.mark.parametrize("ext", C.PLAIN_FORMATS + C.PHYSICAL_FORMATS)
def test_truncated_image_is_refused(capfd, model, tmp_path, ext, fraction):
    d = _case_dir(tmp_path)
    p = C.truncated(d, ext, fraction)
    detect_case(capfd, model, tmp_path, [p], "refuse", p.name, out_dir=tmp_path / "out")


def test_bmp_truncated_to_its_header_is_refused(capfd, model, tmp_path):
    p = C.bmp_header_only(_case_dir(tmp_path))
    detect_case(capfd, model, tmp_path, [p], "refuse", "truncated")


@pytest.mark.parametrize("fill", [0, 255, None])
@pytest.mark.parametrize("where", [0.2, 0.5, 0.8])
@pytest.mark.parametrize("ext", [".jpg", ".png", ".nii.gz"])
def test_block_overwritten_image_is_refused(capfd, model, tmp_path, ext, where, fill):
    """4 KiB overwritten: formats with a checksum or entropy coding must notice (libjpeg only warns)."""
    p = C.overwritten(_case_dir(tmp_path), ext, where, fill)
    detect_case(capfd, model, tmp_path, [p], "refuse", p.name)


# --- family 2: spacing from headers and from --spacing ---------------------------------------------------

HEADER_VALUES = (float("nan"), 0.0, -1.0, float("inf"), -float("inf"), 1e-9, 0.01, 1e308, 100.0, 10.0, 2.0,
                 1.0, 0.1, 0.5)


def header_expectation(ext, value):
    """The spacing source detect must report, or None for a refusal.  ITK reads NRRD space directions
    of -1 and 1e308 as 1 x 1 mm, and 1 x 1 mm is ITK's "no spacing" value: assumed, never "from the file"."""
    if ext == ".nrrd" and value in (-1.0, 1e308):
        return "assumed"
    if not (MIN_SPACING_MM <= value <= MAX_SPACING_MM):
        return None
    if ext == ".dcm":
        return "dicom:ImagerPixelSpacing"
    return "assumed" if value == 1.0 else "file"


@pytest.mark.parametrize("value", HEADER_VALUES)
@pytest.mark.parametrize("ext", [".nrrd", ".mha", ".nii", ".dcm"])
def test_spacing_from_the_header(capfd, model, tmp_path, ext, value):
    p = C.header_spacing(_case_dir(tmp_path), ext, value)
    source = header_expectation(ext, value)
    detect_case(capfd, model, tmp_path, [p], "refuse" if source is None else "ok", p.name, extra=["--no-overlay"])
    if source is not None:
        d = _strict_json(tmp_path / "out" / f"{p.name.split('.')[0]}.json")
        assert d["spacing_source"] == source
        if source != "assumed":
            assert d["spacing_mm"] == pytest.approx([value, value], rel=1e-6)


CLI_SPACINGS = [("0", None), ("-1", None), ("nan", None), ("inf", None), ("1e308", None), ("100", None),
                ("10", None), ("1.5", None), ("0.02", None), ("1e-9", None), ("abc", None), ("0.1,0.2,0.3", None),
                ("0.5,20", None), ("0.5", (0.5, 0.5)), ("0.03", (0.03, 0.03)), ("1", (1.0, 1.0)),
                ("0.1,0.2", (0.1, 0.2))]


@pytest.mark.parametrize("text, spacing", CLI_SPACINGS, ids=[t for t, _ in CLI_SPACINGS])
def test_spacing_from_the_command_line(capfd, model, tmp_path, text, spacing):
    p = C.write_image(_case_dir(tmp_path) / "ok.png")
    detect_case(capfd, model, tmp_path, [p], "ok" if spacing else "refuse", "--spacing",
                extra=["--spacing", text, "--no-overlay"])
    if spacing:
        d = _strict_json(tmp_path / "out" / "ok.json")
        assert d["spacing_mm"] == pytest.approx(list(spacing)) and d["spacing_source"] == "user"


def test_field_of_view_beyond_a_skull_is_refused(capfd, model, tmp_path):
    """1000 px at 0.8 mm is 800 mm: a wrong spacing, refused naming the file (the header's or the user's)."""
    d = _case_dir(tmp_path)
    wide = C.write_image(d / "wide.png", C.skull_like(1000, 300))
    assert 1000 * 0.8 > MAX_FIELD_MM
    detect_case(capfd, model, tmp_path, [wide], "refuse", "wide.png", extra=["--spacing", "0.8"])
    nrrd = C.write_image(d / "wide.nrrd", C.skull_like(1000, 300), spacing=0.8)
    detect_case(capfd, model, tmp_path, [nrrd], "refuse", "wide.nrrd")


# --- family 3: odd files ---------------------------------------------------------------------------------

def _odd(kind, d: Path):
    """(images, expect, needle) of an odd input."""
    if kind == "folder":
        (d / "folder.png").mkdir()
        return [d / "folder.png"], "refuse", "is a folder"
    if kind == "fifo":
        os.mkfifo(d / "pipe.png")
        return [d / "pipe.png"], "refuse", "named pipe"
    if kind == "dev_zero":
        return ["/dev/zero"], "refuse", "character device"
    if kind == "empty":
        (d / "empty.png").write_bytes(b"")
        return [d / "empty.png"], "refuse", "empty"
    if kind == "missing":
        return [d / "missing.png"], "refuse", "not found"
    if kind == "broken_link":
        (d / "link.png").symlink_to(d / "nowhere.png")
        return [d / "link.png"], "refuse", "link.png"
    if kind == "symlink_loop":
        return C.symlink_loop(d)[:1], "refuse", ("a.png", "symbolic links")
    if kind == "text_as_png":
        (d / "text.png").write_text("not an image\n" * 50)
        return [d / "text.png"], "refuse", "text.png"
    if kind == "huge_header":
        return [C.png_claiming(d, 40000, 40000)], "refuse", "megapixels"
    if kind == "tall_header":
        return [C.png_claiming(d, 16, MAX_PIXELS // 16 + 16, "tall.png")], "refuse", "tall.png"
    if kind == "tiny":
        return [C.write_image(d / "tiny.png", np.full((8, 8), 100, np.uint8))], "refuse", "too small"
    if kind == "volume":
        sitk.WriteImage(sitk.GetImageFromArray(np.zeros((3, 40, 30), np.uint8)), str(d / "vol.nrrd"))
        return [d / "vol.nrrd"], "refuse", "3 slices"
    if kind == "nan_pixels":
        a = C.skull_like().astype(np.float32)
        a[5, 5] = np.nan
        sitk.WriteImage(sitk.GetImageFromArray(a), str(d / "nan.mha"))
        return [d / "nan.mha"], "refuse", "NaN"
    if kind == "nan_origin":
        p = C.write_image(d / "origin.nrrd", spacing=0.5)
        p.write_bytes(p.read_bytes().replace(b"space origin: (0,0)", b"space origin: (nan,0)"))
        return [p], "refuse", "origin.nrrd"
    if kind == "far_origin":
        p = C.write_image(d / "far.mha", spacing=0.5)
        p.write_bytes(p.read_bytes().replace(b"Offset = 0 0", b"Offset = 1e300 0"))
        return [p], "refuse", "origin"
    if kind == "garbled_direction":
        p = C.write_image(d / "turned.mha", spacing=0.5)
        p.write_bytes(p.read_bytes().replace(b"TransformMatrix = 1 0 0 1", b"TransformMatrix = nan 0 0 1"))
        return [p], "refuse", "orientation"
    if kind == "long_name":
        return [C.write_image(d / ("x" * 236 + ".png"))], "ok", ""
    if kind == "jpeg_named_png":
        return [C.renamed(d, ".jpg", "photo.png")], "ok", ""
    if kind == "png_named_jpg":
        return [C.renamed(d, ".png", "scan.jpg")], "ok", ""
    if kind == "dicom_named_json":
        return [C.renamed(d, ".dcm", "scan.json")], "ok", ""
    if kind == "grey_alpha":
        return [C.grey_alpha_png(d)], "ok", ""
    if kind == "rgba":
        return [C.rgba_png(d)], "ok", ""
    if kind == "png16":
        return [C.write_image(d / "deep.png", C.skull_like().astype(np.uint16) * 250)], "ok", ""
    if kind == "flat":
        return [C.write_image(d / "flat.png", np.zeros((C.HEIGHT, C.WIDTH), np.uint8))], "ok", ""
    if kind == "tiff16":
        return [C.write_image(d / "deep.tif", C.skull_like().astype(np.uint16) * 250)], "ok", ""
    if kind == "tiff_unsorted_tags":
        return [C.tiff_with_unsorted_tags(d)], "ok", ""
    if kind == "nii_gz":
        return [C.write_image(d / "vol.nii.gz", spacing=0.4)], "ok", ""
    if kind == "monochrome1":
        return [C.dicom(d, "MONOCHROME1")], "ok", ""
    raise ValueError(kind)


ODD = ["folder", "fifo", "dev_zero", "empty", "missing", "broken_link", "symlink_loop", "text_as_png", "huge_header",
       "tall_header", "tiny", "volume", "nan_pixels", "nan_origin", "far_origin", "garbled_direction", "long_name",
       "jpeg_named_png", "png_named_jpg", "dicom_named_json", "grey_alpha", "rgba", "png16", "flat", "tiff16",
       "tiff_unsorted_tags", "nii_gz", "monochrome1"]


@pytest.mark.parametrize("kind", ODD)
def test_odd_file(capfd, model, tmp_path, kind):
    images, expect, needle = _odd(kind, _case_dir(tmp_path))
    old = signal.signal(signal.SIGALRM, lambda *a: pytest.fail("blocked (reading a FIFO?)"))
    signal.alarm(60)
    try:
        detect_case(capfd, model, tmp_path, images, expect, needle)
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


def test_dicom_photometric_interpretations_give_bone_bright_once(tmp_path):
    """SimpleITK (GDCM) already inverts MONOCHROME1: read_radiograph must not invert it again."""
    source = (np.arange(C.HEIGHT * C.WIDTH).reshape(C.HEIGHT, C.WIDTH) % 4000).astype(np.uint16)
    m2 = read_radiograph(C.dicom(tmp_path, "MONOCHROME2", source)).pixels
    np.testing.assert_array_equal(m2, source)
    m1 = read_radiograph(C.dicom(tmp_path, "MONOCHROME1", source)).pixels
    total = m1 + source.astype(np.float32)  # displayed brightness: high where the stored value is low
    assert np.all(total == total.flat[0]) and np.corrcoef(m1.ravel(), source.ravel())[0, 1] < -0.99


def test_grey_alpha_png_reads_its_grey_channel(tmp_path):
    p = C.grey_alpha_png(tmp_path)
    rad = read_radiograph(p)
    assert rad.size == (C.WIDTH, C.HEIGHT)
    np.testing.assert_allclose(rad.pixels * 255, C.skull_like(), atol=0.5)


@pytest.mark.parametrize("value, expected", [(0.5, (0.5, 0.5)), ((0.1, 0.2), (0.1, 0.2)), (MIN_SPACING_MM, None),
                                             (MAX_SPACING_MM, None)])
def test_user_spacing_accepts_the_range(value, expected):
    from CephLandmarksLib.imaging.images import user_spacing

    assert user_spacing(value) == (expected or (value, value))


@pytest.mark.parametrize("value", [0, -1, float("nan"), float("inf"), MIN_SPACING_MM * 0.99, MAX_SPACING_MM * 1.01,
                                   (0.1, 2.0), "abc", (0.1, 0.2, 0.3)])
def test_user_spacing_refuses_the_rest(value):
    from CephLandmarksLib.imaging.images import user_spacing

    with pytest.raises(CephError, match="--spacing"):
        user_spacing(value, "--spacing")


# --- family 4: outputs never replace an input or a file we did not write --------------------------------

def test_default_out_dir_never_replaces_the_input(capfd, model, tmp_path, monkeypatch):
    """`detect xray.png` in the image's folder: the overlay xray.png would be the input."""
    d = _case_dir(tmp_path)
    p = C.write_image(d / "xray.png")
    monkeypatch.chdir(d)
    before = _hashes(d)
    code, out, err = run_cli(capfd, "detect", "xray.png", "--model", model)
    assert_clean(code, out, err, d, d, before, "refuse", "would replace the input image")
    assert sorted(x.name for x in d.iterdir()) == ["xray.png"] and p.is_file()


def test_no_overlay_in_the_images_folder_is_fine(capfd, model, tmp_path):
    d = _case_dir(tmp_path)
    p = C.write_image(d / "xray.png")
    detect_case(capfd, model, tmp_path, [p], "ok", extra=["--no-overlay"], out_dir=d)


def test_dicom_named_like_an_output_is_not_replaced(capfd, model, tmp_path):
    d = _case_dir(tmp_path)
    p = C.renamed(d, ".dcm", "scan.json")
    detect_case(capfd, model, tmp_path, [p], "refuse", "would replace the input image", out_dir=d)


def test_image_named_dot_png(capfd, model, tmp_path):
    """`.png` gives the outputs png.json, png.mrk.json, png.png: nothing hidden, the input kept."""
    d = _case_dir(tmp_path)
    p = C.renamed(d, ".png", ".png")
    detect_case(capfd, model, tmp_path, [p], "ok", out_dir=d)
    assert (d / "png.png").is_file() and (d / ".png").read_bytes()[:4] == b"\x89PNG"


@pytest.mark.parametrize("link", ["hard", "symbolic"])
def test_output_name_linked_to_the_input_is_refused(capfd, model, tmp_path, link):
    d = _case_dir(tmp_path)
    p = C.write_image(d / "xray.png")
    out = tmp_path / "in" / "out"
    out.mkdir()
    (os.link if link == "hard" else os.symlink)(p, out / "xray.png")
    detect_case(capfd, model, tmp_path, [p], "refuse", "would replace the input image", out_dir=out)


FOREIGN = {
    ".json": b'{"patient": "notes the user wrote"}\n',
    ".mrk.json": json.dumps({"@schema": "x", "markups": [{"controlPoints": [{"description": "by hand"}]}]}).encode(),
    ".png": None,  # a real image, not ours
    ".heatmaps.npz": b"PK\x03\x04 not ours",
}


@pytest.mark.parametrize("suffix", list(FOREIGN))
def test_existing_file_we_did_not_write_is_not_replaced(capfd, model, tmp_path, suffix):
    d = _case_dir(tmp_path)
    p = C.write_image(d / "xray.nrrd", spacing=0.5)
    out = d / "out"
    out.mkdir()
    foreign = out / f"xray{suffix}"
    if FOREIGN[suffix] is None:
        C.write_image(foreign)
    else:
        foreign.write_bytes(FOREIGN[suffix])
    extra = ["--heatmaps"] if suffix == ".heatmaps.npz" else []
    detect_case(capfd, model, tmp_path, [p], "refuse", str(foreign), extra=extra, out_dir=out)
    assert sorted(x.name for x in out.iterdir()) == [foreign.name]


def test_folder_at_an_output_name_is_refused(capfd, model, tmp_path):
    d = _case_dir(tmp_path)
    p = C.write_image(d / "xray.png")
    (tmp_path / "out" / "xray.json").mkdir(parents=True)
    detect_case(capfd, model, tmp_path, [p], "refuse", "is a folder")


def test_our_own_earlier_outputs_are_replaced(capfd, model, tmp_path):
    d = _case_dir(tmp_path)
    p = C.write_image(d / "xray.png")
    detect_case(capfd, model, tmp_path, [p], "ok", extra=["--heatmaps"])
    first = _hashes(tmp_path / "out")
    detect_case(capfd, model, tmp_path, [p], "ok", extra=["--heatmaps", "--spacing", "0.4"])
    assert _hashes(tmp_path / "out").keys() == first.keys() and _hashes(tmp_path / "out") != first


def test_out_dir_that_is_a_file_is_refused(capfd, model, tmp_path):
    d = _case_dir(tmp_path)
    p = C.write_image(d / "xray.png")
    (d / "notes.txt").write_text("mine")
    detect_case(capfd, model, tmp_path, [p], "refuse", "--out-dir", out_dir=d / "notes.txt")


def test_new_nested_out_dir_is_created(capfd, model, tmp_path):
    p = C.write_image(_case_dir(tmp_path) / "xray.png")
    detect_case(capfd, model, tmp_path, [p], "ok", out_dir=tmp_path / "a" / "b" / "c")


def test_two_images_with_one_name_are_refused(capfd, model, tmp_path):
    d = _case_dir(tmp_path)
    (d / "x").mkdir()
    a, b = C.write_image(d / "xray.png"), C.write_image(d / "x" / "xray.nrrd", spacing=0.5)
    detect_case(capfd, model, tmp_path, [a, b], "refuse", "same name")


@pytest.mark.skipif(ROOT, reason="root writes into read-only folders")
def test_read_only_out_dir_names_the_file(capfd, model, tmp_path):
    p = C.write_image(_case_dir(tmp_path) / "xray.png")
    out = tmp_path / "out"
    out.mkdir()
    out.chmod(0o555)
    try:
        detect_case(capfd, model, tmp_path, [p], "refuse", "cannot write")
    finally:
        out.chmod(0o755)


# --- family 5: whole-or-nothing, full disks, interruptions, batches ---------------------------------------

@pytest.mark.parametrize("failure", [OSError(28, "No space left on device"), KeyboardInterrupt()],
                         ids=["disk_full", "interrupt"])
def test_failure_while_writing_leaves_nothing(capfd, model, tmp_path, monkeypatch, failure):
    """The overlay (written third) fails: the JSON and markups already written must not stay."""
    from CephLandmarksLib.outputs import plots

    def fail(pixels, detection, path, *a, **k):
        Path(path).write_bytes(b"half a picture")
        raise failure

    monkeypatch.setattr(plots, "render_overlay", fail)
    p = C.write_image(_case_dir(tmp_path) / "xray.png")
    out = tmp_path / "out"
    before = _hashes(tmp_path / "in")
    code, stdout, err = run_cli(capfd, "detect", p, "--model", model, "--out-dir", out)
    assert not out.exists() or list(out.iterdir()) == [], list(out.iterdir())
    assert _hashes(tmp_path / "in") == before
    if isinstance(failure, OSError):
        assert code == 2 and err.strip().splitlines() == [f"{ERROR} cannot write {out / 'xray.png'}: "
                                                         "No space left on device"]
    else:
        assert code == 130 and "Traceback" not in err


def test_batch_goes_on_after_bad_images(capfd, model, tmp_path):
    """Bad images (an absurd header spacing, a header claiming 1600 megapixels, a FIFO, a truncated
    JPEG) among good ones: each bad one gets its line, every good one its complete outputs."""
    d = _case_dir(tmp_path)
    good = [C.write_image(d / "a.png"), C.write_image(d / "c.nrrd", spacing=0.5), C.write_image(d / "e.jpg")]
    far = C.header_spacing(d, ".mha", 1e308)
    huge = C.png_claiming(d, 40000, 40000)
    os.mkfifo(d / "pipe.png")
    cut = C.truncated(d, ".jpg", 0.5)
    images = [far, good[0], huge, good[1], d / "pipe.png", cut, good[2]]
    before = _hashes(d)
    code, out, err = run_cli(capfd, "detect", *images, "--model", model, "--out-dir", tmp_path / "out")
    assert code == 2 and "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 5 and all(line.startswith(ERROR) for line in lines)
    for bad, line in zip([far, huge, "pipe.png", cut], lines[:-1], strict=True):  # the last line: the summary
        assert Path(bad).name in line
    assert "4 of 7 images failed" in lines[-1]
    _assert_whole_or_nothing(tmp_path / "out", ["a", "c", "e", "sp_1e+308", "huge", "pipe", "cut50"])
    assert _hashes(d) == before
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == sorted(
        f"{Path(g).name.split('.')[0]}{s}" for g in good for s in OUTPUT_SUFFIXES)


def test_symlink_loop_among_good_images(capfd, model, tmp_path):
    """`ln -s b.png a.png; ln -s a.png b.png` among good images: one line for each link of the loop,
    the good images get their outputs (pathlib's resolve() raised RuntimeError before)."""
    d = _case_dir(tmp_path)
    loop = C.symlink_loop(d)
    good = [C.write_image(d / "c.png"), C.write_image(d / "e.png", C.skull_like(seed=2))]
    before = _hashes(d)
    code, out, err = run_cli(capfd, "detect", good[0], *loop, good[1], "--model", model, "--out-dir", tmp_path / "out")
    assert code == 2 and "Traceback" not in err, err
    lines = err.strip().splitlines()
    assert len(lines) == 3 and all(line.startswith(ERROR) for line in lines), err
    assert "a.png" in lines[0] and "b.png" in lines[1] and "2 of 4 images failed" in lines[2]
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == sorted(
        f"{n}{s}" for n in "ce" for s in OUTPUT_SUFFIXES)
    assert _hashes(d) == before


# --- report ------------------------------------------------------------------------------------------------

def test_report_refuses_a_foreign_file_and_bad_spacing(capfd, model, tmp_path):
    d = _case_dir(tmp_path)
    p = C.write_image(d / "xray.png")
    out = tmp_path / "out"
    out.mkdir()
    (out / "xray_report.pdf").write_bytes(b"%PDF-1.4 the user's own report")
    before = _hashes(tmp_path)
    code, _, err = run_cli(capfd, "report", p, "--model", model, "--out-dir", out)
    assert_clean(code, "", err, out, tmp_path, before, "refuse", "xray_report.pdf")
    code, _, err = run_cli(capfd, "report", p, "--model", model, "--out-dir", tmp_path / "o2", "--spacing", "10")
    assert_clean(code, "", err, tmp_path / "o2", tmp_path, before, "refuse", "--spacing")
    code, _, err = run_cli(capfd, "report", C.truncated(d, ".png", 0.5), "--model", model, "--out-dir", tmp_path / "o3")
    assert code == 2 and len(err.strip().splitlines()) == 1 and "cut50.png" in err


# --- real processes: signals and a batch -------------------------------------------------------------------

def _cli_process(*argv, **kw):
    env = dict(os.environ, OMP_NUM_THREADS="1")
    return subprocess.Popen([sys.executable, "-m", "CephLandmarksLib", *map(str, argv)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            cwd=str(Path(__file__).resolve().parent.parent), **kw)


def _assert_whole_or_nothing(out_dir, stems):
    names = {p.name for p in Path(out_dir).iterdir()} if Path(out_dir).is_dir() else set()
    assert not [n for n in names if n.endswith(".part") or n.startswith(".")], names
    for stem in stems:
        have = [f"{stem}{s}" in names for s in OUTPUT_SUFFIXES]
        assert all(have) or not any(have), (stem, names)


@pytest.mark.slow
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_signal_mid_detect_leaves_whole_sets_only(model, tmp_path, signum):
    d = _case_dir(tmp_path)
    images = [C.write_image(d / f"img{i}.png", C.skull_like(seed=i)) for i in range(6)]
    before = _hashes(d)
    proc = _cli_process("detect", *images, "--model", model, "--out-dir", tmp_path / "out", "--progress")
    for line in proc.stderr:  # interrupt while it writes an image's results
        if "writing the results" in line:
            proc.send_signal(signum)
            break
    _, err = proc.communicate(timeout=120)
    assert proc.returncode in (128 + signum, 130, -signum), (proc.returncode, err)
    assert "Traceback" not in err, err
    _assert_whole_or_nothing(tmp_path / "out", [f"img{i}" for i in range(6)])
    assert _hashes(d) == before


@pytest.mark.slow
def test_batch_process_finishes_the_good_files(model, tmp_path):
    d = _case_dir(tmp_path)
    good = [C.write_image(d / "a.png"), C.write_image(d / "z.png", C.skull_like(seed=3))]
    bad = [C.header_spacing(d, ".mha", 1e308), C.truncated(d, ".bmp", 0.5)]
    t = time.time()
    proc = _cli_process("detect", good[0], *bad, good[1], "--model", model, "--out-dir", tmp_path / "out")
    out, err = proc.communicate(timeout=180)
    assert proc.returncode == 2 and "Traceback" not in err, err
    lines = err.strip().splitlines()
    assert len(lines) == 3 and all(line.startswith(ERROR) for line in lines), err
    assert "Warning" not in err and time.time() - t < 180
    _assert_whole_or_nothing(tmp_path / "out", ["a", "z"])
    assert {p.name for p in (tmp_path / "out").iterdir()} == {f"{s}{x}" for s in "az" for x in OUTPUT_SUFFIXES}


def test_no_python_warning_escapes_detect(capfd, model, tmp_path):
    """NumPy's RuntimeWarnings on flat heatmaps (an untrained model, a flat image), matplotlib's and
    torch's: none may reach the user (pytest would otherwise swallow them, hence the recording)."""
    import warnings

    d = _case_dir(tmp_path)
    images = [C.write_image(d / "flat.png", np.zeros((C.HEIGHT, C.WIDTH), np.uint8)), C.write_image(d / "x.nrrd",
                                                                                                     spacing=0.5)]
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        code, _, err = run_cli(capfd, "detect", *images, "--model", model, "--out-dir", tmp_path / "out", "--heatmaps")
    assert code == 0 and err == "" and [str(w.message) for w in seen] == []


def test_failed_rename_takes_back_the_renamed_files(tmp_path, monkeypatch):
    """Whole-or-nothing even when the last rename fails: the files renamed before it are removed."""
    from CephLandmarksLib import files

    real, calls = os.replace, []

    def flaky(src, dst):
        calls.append(dst)
        if len(calls) == 3:
            raise OSError(28, "No space left on device")
        return real(src, dst)

    monkeypatch.setattr(files.os, "replace", flaky)
    jobs = [(tmp_path / f"x{s}", lambda tmp: Path(tmp).write_text("data")) for s in OUTPUT_SUFFIXES]
    with pytest.raises(CephError, match=r"cannot write .*x\.png: No space left on device"):
        files.write_group(jobs)
    assert list(tmp_path.iterdir()) == []


def test_evaluate_writes_predictions_whole_or_not_at_all(capfd, model, generic_dataset, tmp_path, monkeypatch):
    """predictions.npz goes through a temporary file: a failure in the middle leaves no partial file."""
    code, _, err = run_cli(capfd, "evaluate", "--model", model, "--dataset", generic_dataset, "--split", "test1",
                           "--out", tmp_path / "ev")
    assert code == 0, err
    with np.load(tmp_path / "ev" / "predictions.npz", allow_pickle=False) as z:
        assert z["pred_px"].shape == (2, 19, 2) and len(z["ids"]) == 2
    _strict_json(tmp_path / "ev" / "metrics.json")

    def half_written(f, **arrays):
        f.write(b"PK\x03\x04 half")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(np, "savez_compressed", half_written)
    code, _, err = run_cli(capfd, "evaluate", "--model", model, "--dataset", generic_dataset, "--split", "test1",
                           "--out", tmp_path / "ev2")
    assert code == 2 and err.strip().splitlines() == [
        f"{ERROR} cannot write {tmp_path / 'ev2' / 'predictions.npz'}: No space left on device"]
    assert not (tmp_path / "ev2" / "predictions.npz").exists() and not list((tmp_path / "ev2").glob(".*"))


def _radiograph_file(d: Path, **changes) -> Path:
    from CephLandmarksLib.imaging.images import Radiograph, save_radiograph

    rad = Radiograph(C.skull_like().astype(np.float32), (0.5, 0.5), "volume", "scan")
    for k, v in changes.items():
        setattr(rad, k, v)
    save_radiograph(d / "scan.radiograph.npz", rad)
    return d / "scan.radiograph.npz"


@pytest.mark.parametrize("changes, needle", [
    ({}, None), ({"spacing_mm": (50.0, 50.0)}, "outside the range"), ({"spacing_mm": (np.nan, 0.5)}, "positive"),
    ({"origin_lps": (np.inf, 0.0, 0.0)}, "origin"), ({"direction_lps": (0.0,) * 9}, "orientation"),
    ({"pixels": np.zeros((8, 8), np.float32)}, "not a finite 2D image")], ids=["ok", "far", "nan", "inf_origin",
                                                                             "zero_direction", "tiny"])
def test_radiograph_file_from_slicer_is_checked_like_an_image(capfd, model, tmp_path, changes, needle):
    p = _radiograph_file(_case_dir(tmp_path), **changes)
    detect_case(capfd, model, tmp_path, [p], "refuse" if needle else "ok", (p.name, needle) if needle else "",
                extra=["--no-overlay"])


def test_damaged_radiograph_file_is_refused(capfd, model, tmp_path):
    p = _radiograph_file(_case_dir(tmp_path))
    p.write_bytes(p.read_bytes()[: p.stat().st_size // 2])
    detect_case(capfd, model, tmp_path, [p], "refuse", "not a radiograph file")
