"""Shared fixtures: tiny synthetic radiographs and datasets, a tiny trained model, the ISBI copy."""

import csv
import os
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from CephLandmarksLib.landmarks import N_LANDMARKS

ISBI_ROOT = Path(os.environ.get("CEPH_ISBI_DIR",
                                Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "isbi2015"))

# A fixed "anatomy": landmark positions as fractions of the image size.
TEMPLATE = np.random.default_rng(7).uniform(0.15, 0.85, size=(N_LANDMARKS, 2))


def synthetic_image(rng, width=96, height=120):
    """(pixels uint8 (H, W), landmarks (19, 2) px): noise plus a distinct blob pattern per landmark."""
    pts = TEMPLATE * [width, height] + rng.normal(0, 2.0, size=(N_LANDMARKS, 2))
    yy, xx = np.mgrid[0:height, 0:width]
    img = rng.normal(40, 8, size=(height, width))
    for i, (x, y) in enumerate(pts):
        img += (60 + 8 * i) * np.exp(-((xx - x) ** 2 + (yy - y) ** 2) / (2 * (1.5 + 0.1 * i) ** 2))
    return np.clip(img, 0, 255).astype(np.uint8), pts


def write_png(path, pixels):
    sitk.WriteImage(sitk.GetImageFromArray(pixels), str(path))


def make_generic_dataset(root, n_train=8, n_test=2, seed=0):
    """A generic-layout dataset in root: synthetic PNGs and landmarks.csv (n_train train, n_test test)."""
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n_train + n_test):
        pixels, pts = synthetic_image(rng)
        write_png(root / f"img{i:02d}.png", pixels)
        rows.append([f"img{i:02d}.png"] + [f"{v:.3f}" for v in pts.ravel()]
                    + ["0.5", "train" if i < n_train else "test"])
    with open(root / "landmarks.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["image"] + [f"{a}{i}" for i in range(1, N_LANDMARKS + 1) for a in "xy"] + ["spacing_mm", "split"])
        w.writerows(rows)
    return root


@pytest.fixture(scope="session")
def generic_dataset(tmp_path_factory):
    """A generic-layout dataset: 10 PNGs and landmarks.csv (8 train, 2 test)."""
    return make_generic_dataset(tmp_path_factory.mktemp("generic"))


@pytest.fixture(scope="session")
def tiny_model(generic_dataset, tmp_path_factory):
    """A model trained for 2 epochs at 64 x 64 on the synthetic dataset (a few seconds)."""
    from CephLandmarksLib.training.loop import TrainConfig, train

    out = tmp_path_factory.mktemp("model") / "tiny.safetensors"
    cfg = TrainConfig(dataset=str(generic_dataset), out=str(out), input_size=(64, 64), epochs=2,
                      batch_size=4, holdout=2, device="cpu")
    train(cfg, log=lambda m: None, progress=False)
    return out


@pytest.fixture
def isbi_root():
    if not (ISBI_ROOT / "RawImage").is_dir():
        pytest.skip(f"ISBI 2015 data not found at {ISBI_ROOT}")
    return ISBI_ROOT


# --- the Slicer module as installed, on Slicer 5.12's Python layer (test_slicer_*.py) ---------------

@pytest.fixture(scope="module")
def installed():
    """The extension's installed qt-scripted-modules folder (built once per test module); skipped, saying
    why, where Slicer 5.12's layer or the build tools are absent (a clone without ../shared)."""
    from slicer_harness import build, missing_reason

    reason = missing_reason() or build.skip_reason()
    if reason:
        pytest.skip(str(reason))
    return build.installed_scripted_modules()


@pytest.fixture
def harness(tmp_path, installed):
    """A fresh headless Slicer environment over the installed module, torn down afterwards."""
    from slicer_harness import install_slicer_environment

    h = install_slicer_environment(tmp_path / "slicer", installed)
    try:
        yield h
    finally:
        h.teardown()


@pytest.fixture
def widget(harness):
    """The CephLandmarks module's widget, loaded in the harness."""
    harness.load_module("CephLandmarks")
    return harness.create_widget("CephLandmarks")


# --- the fast tier: pytest -m "not slow" --------------------------------------------------------

# A test that needs one of these fixtures trains a model, loads the shipped one, builds the extension
# or reads the ISBI data, so it is slow, whether or not it says so: it is marked here, from the fixtures
# it uses (directly or through another fixture), and so is every new test that uses them.
SLOW_FIXTURES = frozenset({"tiny_model", "installed", "isbi_root", "ensemble", "detector"})
# The generated hostile corpora (hundreds of bad images, models and datasets, each through the CLI):
# about 90 s together on 2 cores, run by CI and before a change to reading or writing files.
SLOW_MODULES = frozenset({"test_hostile_images.py", "test_hostile_models_datasets.py"})


def pytest_collection_modifyitems(config, items):
    for item in items:
        if SLOW_FIXTURES & set(getattr(item, "fixturenames", ())) or item.path.name in SLOW_MODULES:
            item.add_marker(pytest.mark.slow)
