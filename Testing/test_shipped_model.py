"""The shipped default model on a few real ISBI Test2 images: catches broken preprocessing or model files."""

import numpy as np
import pytest

from CephLandmarksLib import cli
from CephLandmarksLib.annotations.datasets import load_dataset
from CephLandmarksLib.detection.predictor import LandmarkDetector
from CephLandmarksLib.imaging.images import read_radiograph
from CephLandmarksLib.training.metrics import radial_errors_mm


@pytest.fixture(scope="module")
def detector():
    if not list(cli.DEFAULT_MODEL_DIR.glob("*.safetensors")):
        pytest.skip("no default model shipped in Resources/Models")
    return LandmarkDetector(cli.default_model_path())


def test_shipped_model_metadata(detector):
    info = detector.info
    assert len(info.landmark_names) == 19 and len(info.temperatures) == 19
    assert info.calibration["nll_after"] <= info.calibration["nll_before"] + 1e-6  # the fitted objective
    assert set(info.training["holdout_ids"]).isdisjoint({f"{i:03d}" for i in range(151, 401)})  # never test images


def test_shipped_model_accuracy_on_test2_images(detector, isbi_root):
    samples = load_dataset(isbi_root, "test2")[::25]  # 4 images, spread over the split
    errors = []
    for s in samples:
        d = detector.detect(read_radiograph(s.image_path), contours=False)
        errors.append(radial_errors_mm(d.points_px, s.landmarks_px, (0.1, 0.1)))
    errors = np.array(errors)
    assert errors.mean() < 2.5, errors.mean(axis=1)  # the model scores about 1.5 mm on Test2
    assert np.median(errors) < 2.0
