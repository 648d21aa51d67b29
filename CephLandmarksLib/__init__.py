"""CephLandmarksLib: cephalometric landmark detection with contour-hugging heatmaps.

Pure Python (torch, numpy, SimpleITK); never imports slicer.  The names a script needs are
exported here and imported on first use, so that importing any submodule (as Slicer's own
process does: the registry, the detection result, geometry) never imports torch::

    from CephLandmarksLib import LandmarkDetector, read_radiograph
    detection = LandmarkDetector().detect(read_radiograph("ceph.dcm"))

See docs/api.md for an example and the packages' docstrings for the layers.
"""

import importlib

__version__ = "0.1.0"

# public name -> the module that defines it (imported lazily by __getattr__)
_EXPORTS = {
    "LandmarkDetector": "detection.predictor",  # the predictor: radiograph -> Detection (needs torch)
    "read_radiograph": "imaging.images",  # any 2D image SimpleITK reads, with its spacing, checked
    "Detection": "detection.result",  # points, uncertainty and heatmaps of one detection
    "load_detection": "detection.result",  # a Detection back from NAME.json (+ NAME.heatmaps.npz)
    "MEASUREMENTS": "cephalometry.measurements",  # the measurement catalogue
    "ModelRegistry": "store.registry",  # shipped, imported, trained and adapted models (no torch)
    "CephError": "errors",  # what every user-fixable problem raises
}
__all__ = ["__version__", *_EXPORTS]


def __getattr__(name: str):
    if name in _EXPORTS:
        value = getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
        globals()[name] = value  # cached: __getattr__ runs once per name
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(_EXPORTS))
