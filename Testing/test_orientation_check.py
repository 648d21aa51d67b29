"""The orientation check skips the mirrored pass only when the first pass is clearly right-facing
(detection/orientation.py), and otherwise decides as before (the higher mean confidence)."""

import numpy as np

from CephLandmarksLib.detection.alignment import ISBI_MEAN_LANDMARKS_MM
from CephLandmarksLib.detection.orientation import CLEAR_MEAN_CONFIDENCE, CLEAR_MIN_CONFIDENT, orientation_clear

MM_PER_PX = 0.5
REF = (np.asarray(ISBI_MEAN_LANDMARKS_MM) + 0.05) / MM_PER_PX - 0.5  # model pixels
CANVAS_W = 1935 * 0.1 / MM_PER_PX


def test_a_confident_first_pass_in_the_training_shape_is_clear():
    uv = REF + [12.0, -7.0] + np.random.default_rng(0).normal(0, 2.0, REF.shape)  # moved, not mirrored
    confident = np.arange(19) < 14
    assert orientation_clear(2 * CLEAR_MEAN_CONFIDENCE, uv, REF, confident, MM_PER_PX)
    assert not orientation_clear(0.9 * CLEAR_MEAN_CONFIDENCE, uv, REF, confident, MM_PER_PX)  # not confident enough
    few = np.arange(19) < CLEAR_MIN_CONFIDENT - 1
    assert not orientation_clear(2 * CLEAR_MEAN_CONFIDENCE, uv, REF, few, MM_PER_PX)


def test_a_mirrored_profile_is_never_clear_however_confident():
    mirrored = np.c_[CANVAS_W - 1 - REF[:, 0], REF[:, 1]]  # the same skull facing left
    assert not orientation_clear(1.0, mirrored, REF, np.ones(19, bool), MM_PER_PX)


def test_the_mirrored_pass_runs_only_when_the_first_is_unclear(tiny_model, generic_dataset, monkeypatch):
    from CephLandmarksLib.detection.predictor import LandmarkDetector
    from CephLandmarksLib.imaging.images import read_radiograph

    det = LandmarkDetector(tiny_model, align=False)
    rad = read_radiograph(generic_dataset / "img08.png", 0.5)
    forward, mirrored = det._forward, []
    monkeypatch.setattr(det, "_forward", lambda r, mirror_x=False: mirrored.append(mirror_x) or forward(r, mirror_x))
    for clear, expect in ((True, [False]), (False, [False, True])):
        monkeypatch.setattr("CephLandmarksLib.detection.predictor.orientation_clear", lambda *a, clear=clear: clear)
        mirrored.clear()
        det.observe(rad)
        assert mirrored == expect
