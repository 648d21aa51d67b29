"""The detector `detect` runs: loaded afresh by the command line, kept loaded by the worker.

`ceph-landmarks detect` loads its model once per run.  The worker (CephLandmarksLib/worker/serve.py)
runs that very command again and again in one process; after `keep_loaded()` the detector of the
last (model file, device, orientation check, refiner) is reused while the model file is unchanged on disk
(path, size, modification time; for a sidecar, its weights file's too) and the refiner is the same
(its SHA-256), so a job pays neither the torch import nor the model load.  One model at a time:
another model, device or refiner replaces it.
"""

import os

from ..store.sidecar import is_sidecar_path, read_sidecar, weights_path

_kept = None  # None: load afresh (the command line); {key: detector} in the worker


def keep_loaded() -> None:
    """From now on, reuse the detector of an unchanged model (the worker calls this once)."""
    global _kept
    _kept = {}


def keeps_loaded() -> bool:
    """Whether this process keeps its detector loaded (the worker): detect then runs in this process."""
    return _kept is not None


def _file_key(path) -> tuple:
    st = os.stat(path)
    return os.path.realpath(path), st.st_size, st.st_mtime_ns


def _model_key(model_path, device, orientation_check, refiner=None) -> tuple:
    key = [_file_key(model_path)]
    if is_sidecar_path(model_path):
        key.append(_file_key(weights_path(model_path, read_sidecar(model_path))))
    return (*key, str(device), bool(orientation_check), refiner.sha256 if refiner is not None else None)


def load_detector(model_path, device="cpu", orientation_check: bool = True, refiner=None):
    """A LandmarkDetector for the model (and the second stage `refiner`, a LoadedRefiner, if given):
    a new one, or the kept one after keep_loaded()."""
    from ..detection.predictor import LandmarkDetector

    def new():
        return LandmarkDetector(model_path, device, orientation_check, refiner=refiner)

    if _kept is None:
        return new()
    try:
        key = _model_key(model_path, device, orientation_check, refiner)
    except OSError:  # a missing model: LandmarkDetector names the problem
        return new()
    if key not in _kept:
        _kept.clear()  # release the previous model before loading the next
        _kept[key] = new()
    return _kept[key]
