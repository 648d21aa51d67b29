"""The second stage trained on synthetic data: a tiny refiner behind the tiny model sharpens points
it is given 1.5 mm off, resumes from its checkpoint, and its file loads; the command's bad input."""

import argparse

import numpy as np
import pytest
import torch

from CephLandmarksLib.detection.combined_map import fine_peak
from CephLandmarksLib.detection.refinement import fine_probs
from CephLandmarksLib.errors import CephError
from CephLandmarksLib.imaging.crops import crop_frames
from CephLandmarksLib.imaging.images import normalise
from CephLandmarksLib.store.refinerfile import load_refiner
from CephLandmarksLib.training.refiner_cli import add_train_refiner_command
from CephLandmarksLib.training.refiner_data import Jitter
from CephLandmarksLib.training.refiner_training import RefinerConfig, best_epoch, train_refiner
from conftest import synthetic_image

SPACING = (0.5, 0.5)  # the synthetic dataset's


def tiny_config(model, dataset, out, epochs):
    return RefinerConfig(model=str(model), dataset=str(dataset), out=str(out), epochs=epochs, batch_size=16, lr=1e-2,
                         crop_size=32, crop_mm_per_px=0.25, patch_size=56, channels=(8, 16, 32, 32), threads=1,
                         jitter={"max_mm": 2.5, "wide_mm": 2.5, "wide_p": 0.5})


@pytest.mark.slow
def test_tiny_refiner_sharpens_points_and_resumes(generic_dataset, tiny_model, tmp_path):
    torch.manual_seed(0)
    out = tmp_path / "refiner.safetensors"
    train_refiner(tiny_config(tiny_model, generic_dataset, out, 1), log=lambda m: None)
    path = train_refiner(tiny_config(tiny_model, generic_dataset, out, 12), resume=True, log=lambda m: None)
    refiner = load_refiner(path)
    assert path.stat().st_size < 8_000_000
    assert len(refiner.info.training["history"]) == 12  # 1 epoch, then 11 more resumed
    assert len(refiner.info.temperatures) == 19
    # the two stages' flag threshold and region masses, fitted on the held-out images, and used by detect
    cal = refiner.info.calibration
    assert refiner.info.ere_threshold_mm is not None and cal["images"] == refiner.info.training["holdout_ids"]
    assert {k: len(m) for k, m in refiner.info.region_masses.items()} == {"50": 19, "90": 19}
    from CephLandmarksLib.detection.predictor import LandmarkDetector

    settings = LandmarkDetector(tiny_model, refiner=refiner).settings
    assert settings.ere_threshold_mm == refiner.info.ere_threshold_mm
    np.testing.assert_allclose(settings.region_masses["90"], refiner.info.region_masses["90"])

    rng = np.random.default_rng(123)  # images the refiner never saw
    coarse_err, fine_err = [], []
    for _ in range(3):
        pixels, truth = synthetic_image(rng)
        angle = rng.uniform(0, 2 * np.pi, len(truth))
        coarse = truth + 3.0 * np.stack([np.cos(angle), np.sin(angle)], -1)  # 1.5 mm off
        crops = crop_frames(coarse, SPACING, (32, 32), 0.25)
        q = fine_probs(refiner, normalise(pixels), crops).numpy()
        fine = np.stack([c.crop_to_image(fine_peak(qi)) for c, qi in zip(crops, q, strict=True)])
        coarse_err.append(np.hypot(*(coarse - truth).T) * SPACING[0])
        fine_err.append(np.hypot(*(fine - truth).T) * SPACING[0])
    assert np.mean(fine_err) < 0.6 * np.mean(coarse_err), (np.mean(fine_err), np.mean(coarse_err))


def test_jitter_draws_the_held_out_errors_of_each_landmark():
    errors = np.zeros((5, 3, 2))
    errors[:, 1] = [2.0, 0.0]  # landmark 1 always 2 mm to the right
    j = Jitter(errors, scale=(1.0, 1.0), kde_mm=0.0, wide_p=0.0)
    d = j.draw(torch.tensor([0, 1, 1]), torch.Generator().manual_seed(0))
    np.testing.assert_allclose(d.numpy(), [[0, 0], [2, 0], [2, 0]], atol=1e-6)
    far = Jitter(errors * 10, scale=(1.0, 1.0), kde_mm=0.0, wide_p=0.0, max_mm=3.0).draw(
        torch.tensor([1]), torch.Generator().manual_seed(0))
    assert float(far.norm()) == pytest.approx(3.0)  # clamped to the largest offset a crop can hold


def test_train_refiner_with_a_missing_model_is_one_line(tmp_path):
    parser = argparse.ArgumentParser()
    add_train_refiner_command(parser.add_subparsers(dest="command"))
    a = parser.parse_args(["train-refiner", "--model", str(tmp_path / "none.safetensors"), "--dataset",
                           str(tmp_path), "--out", str(tmp_path / "r.safetensors")])
    with pytest.raises(CephError, match="none.safetensors") as e:  # the CLI prints it as one line, exit 2
        a.func(a)
    assert "\n" not in str(e.value)
    assert not (tmp_path / "r.safetensors").exists()


def test_best_epoch_judges_only_points_inside_their_crops():
    """The best epoch is the lowest MRE over the points whose truth lies in their crop; when no truth
    does (a base model far off), validation cannot judge the refiner and the last epoch is kept."""
    judged = [{"val_mre_mm": 5.0, "val_inside_mre_mm": 0.9}, {"val_mre_mm": 4.0, "val_inside_mre_mm": 1.1},
              {"val_mre_mm": 6.0, "val_inside_mre_mm": 0.7}, {"val_mre_mm": 3.0, "val_inside_mre_mm": 0.8}]
    assert best_epoch(judged) == 3  # not epoch 4, whose lower overall MRE comes from points outside the crops
    blind = [{"val_mre_mm": m, "val_inside_mre_mm": None} for m in (36.9, 35.7, 36.2)]
    assert best_epoch(blind) == 3
    assert best_epoch([{"val_mre_mm": 2.0}, {"val_mre_mm": 1.0}, {"val_mre_mm": 1.5}]) == 2  # older checkpoints
