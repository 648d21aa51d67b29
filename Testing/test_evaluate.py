"""evaluate runs detect's predictor: its points and flags are those `detect` gives for the same images."""

import csv
import json
import shutil

import numpy as np
import pytest

from CephLandmarksLib.annotations.datasets import load_dataset
from CephLandmarksLib.detection.predictor import LandmarkDetector
from CephLandmarksLib.imaging.images import read_radiograph
from CephLandmarksLib.training.evaluate import evaluate
from CephLandmarksLib.training.metrics import radial_errors_mm


@pytest.fixture
def rescaled_dataset(generic_dataset, tmp_path):
    """The synthetic dataset with the test images at another pixel spacing (0.35 mm, training 0.5 mm):
    detect resamples them to the model's own mm per pixel, training's fit framing would not."""
    ds = tmp_path / "ds"
    shutil.copytree(generic_dataset, ds)
    with open(ds / "landmarks.csv", newline="") as f:
        rows = list(csv.reader(f))
    for row in rows[1:]:
        if row[-1] == "test":
            row[-2] = "0.35"
    with open(ds / "landmarks.csv", "w", newline="") as f:
        csv.writer(f).writerows(rows)
    return ds


def test_evaluate_reports_what_detect_produces(tiny_model, rescaled_dataset, tmp_path):
    m = evaluate(tiny_model, rescaled_dataset, "test1", tmp_path / "ev", log=lambda *a: None)
    samples = load_dataset(rescaled_dataset, "test1")
    detector = LandmarkDetector(tiny_model)
    dets = [detector.detect(read_radiograph(s.image_path, s.spacing_mm), contours=False) for s in samples]
    with np.load(tmp_path / "ev" / "predictions.npz", allow_pickle=False) as z:
        assert list(z["ids"]) == [s.id for s in samples]
        points = np.stack([d.points_px for d in dets])
        np.testing.assert_allclose(z["pred_px"], points, rtol=0, atol=1e-6)  # NaN (missing) where detect has NaN
        flagged = np.array([[lm.flagged for lm in d.landmarks] for d in dets])
        assert np.array_equal(z["flagged"], flagged)
        true = np.stack([s.landmarks_px for s in samples])
        errors = radial_errors_mm(points, true, [d.spacing_mm for d in dets])
        np.testing.assert_allclose(z["errors_mm"], np.where(np.isnan(errors), np.inf, errors), rtol=1e-9)
        np.testing.assert_allclose(z["ere_mm"], [[lm.ere_mm for lm in d.landmarks] for d in dets], rtol=1e-6)
    assert m["flagged_percent"] == pytest.approx(100 * flagged.mean())
    assert m["n_missing_points"] == int(np.isnan(points[..., 0]).sum())
    assert sum(m["passes"]["orientation"].values()) == len(samples) == m["n_images"]
    assert "observe" in m["predictor"] and "decide" in m["predictor"]
    json.loads((tmp_path / "ev" / "metrics.json").read_text(), parse_constant=lambda c: pytest.fail(c))


def test_evaluate_fixes_glibcs_mmap_threshold_unless_the_user_set_one(monkeypatch, tmp_path):
    """`evaluate` sets glibc's mmap threshold before its loop (memory.py: the heap otherwise grew
    about 30 MB an image); a user's MALLOC_MMAP_THRESHOLD_ wins, and other C libraries are left alone."""
    import ctypes

    from CephLandmarksLib import cli, memory

    monkeypatch.delenv("MALLOC_MMAP_THRESHOLD_", raising=False)
    try:
        ctypes.CDLL(None).mallopt  # noqa: B018 - the probe: does this C library have mallopt?
    except (OSError, AttributeError):
        assert memory.limit_heap_fragmentation() is False
        return
    assert memory.limit_heap_fragmentation() is True
    monkeypatch.setenv("MALLOC_MMAP_THRESHOLD_", "65536")
    assert memory.limit_heap_fragmentation() is False
    calls = []
    monkeypatch.setattr(memory, "limit_heap_fragmentation", lambda: calls.append("set"))
    monkeypatch.setattr("CephLandmarksLib.training.evaluate.evaluate", lambda *a, **k: calls.append("evaluate") or
                        {"mre_mm": 1.0, "sdr": {"2.0": 80.0}, "ece": 1.0})
    assert cli.main(["evaluate", "--dataset", str(tmp_path), "--out", str(tmp_path / "out")]) == 0
    assert calls == ["set", "evaluate"]
