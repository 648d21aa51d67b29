"""The detector `detect` runs: loaded afresh by the command line, kept loaded by the worker.

`ceph-landmarks detect` loads its model once per run.  The worker (CephLandmarksLib/worker/serve.py)
runs that very command again and again in one process; after `keep_loaded()` the detector of the
last (model file, device, orientation check) is reused while the model file is unchanged on disk
(path, size, modification time; for a sidecar, its weights file's too), so a job pays neither the
torch import nor the model load.  One model at a time: another model or device replaces it.
"""

import os

from ..store.sidecar import is_sidecar_path, read_sidecar, weights_path

_kept = None  # None: load afresh (the command line); {key: detector} in the worker


def keep_loaded() -> None:
    """From now on, reuse the detector of an unchanged model (the worker calls this once)."""
    global _kept
    _kept = {}


def _file_key(path) -> tuple:
    st = os.stat(path)
    return os.path.realpath(path), st.st_size, st.st_mtime_ns


def _model_key(model_path, device, orientation_check) -> tuple:
    key = [_file_key(model_path)]
    if is_sidecar_path(model_path):
        key.append(_file_key(weights_path(model_path, read_sidecar(model_path))))
    return (*key, str(device), bool(orientation_check))


def load_detector(model_path, device="cpu", orientation_check: bool = True):
    """A LandmarkDetector for the model: a new one, or the kept one after keep_loaded()."""
    from ..detection.predictor import LandmarkDetector

    if _kept is None:
        return LandmarkDetector(model_path, device, orientation_check)
    try:
        key = _model_key(model_path, device, orientation_check)
    except OSError:  # a missing model: LandmarkDetector names the problem
        return LandmarkDetector(model_path, device, orientation_check)
    if key not in _kept:
        _kept.clear()  # release the previous model before loading the next
        _kept[key] = LandmarkDetector(model_path, device, orientation_check)
    return _kept[key]
