"""The public API: the names CephLandmarksLib exports, torch-free until a torch name is used, and
docs/api.md's example run as written (on a synthetic radiograph)."""

import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import CephLandmarksLib
from conftest import synthetic_image, write_png

ROOT = Path(__file__).resolve().parents[1]


def test_every_exported_name_resolves():
    for name in CephLandmarksLib.__all__:
        assert getattr(CephLandmarksLib, name) is not None, name
    assert set(CephLandmarksLib.__all__) <= set(dir(CephLandmarksLib))
    with pytest.raises(AttributeError, match="no attribute 'nothing'"):
        CephLandmarksLib.nothing  # noqa: B018


@pytest.mark.parametrize("names", [
    "MEASUREMENTS, load_detection, Detection, ModelRegistry, read_radiograph, CephError",
    "",  # a submodule Slicer imports, through the package's __init__
])
def test_the_torch_free_exports_do_not_import_torch(names):
    code = ("import sys; import CephLandmarksLib.detection.result, CephLandmarksLib.store.registry\n"
            + (f"from CephLandmarksLib import {names}\n" if names else "")
            + "sys.exit(3 if 'torch' in sys.modules else 0)")
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert run.returncode == 0, run.stderr[-800:]


def test_the_detector_export_is_the_predictor():
    from CephLandmarksLib.detection.predictor import LandmarkDetector
    assert CephLandmarksLib.LandmarkDetector is LandmarkDetector


@pytest.mark.slow
def test_the_documented_example_runs(tmp_path, monkeypatch):
    (block,) = re.findall(r"```python\n(.*?)```", (ROOT / "docs" / "api.md").read_text(encoding="utf-8"), re.S)
    pixels, _ = synthetic_image(np.random.default_rng(0), width=480, height=600)
    write_png(tmp_path / "radiograph.png", pixels)
    code = block.replace('"radiograph.dcm"', repr(str(tmp_path / "radiograph.png")))
    assert code != block
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert run.returncode == 0, run.stderr[-1500:]
    lines = run.stdout.splitlines()
    # noise with blobs is no skull: the shipped model flags points, and each line names its reasons
    line_form = r"^[A-Za-z'’]+: \(.*\) mm, ERE [\d.]+ mm, P\(error > 4 mm\) \d+%, \w"
    assert lines and all(re.match(line_form, ln) for ln in lines), lines
