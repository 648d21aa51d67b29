"""The CLI's detect on a list of files: one detector, per-image outputs, a bad image never stops the batch."""

from pathlib import Path

from .errors import CephError
from .detect import LandmarkDetector
from .images import read_radiograph


def detect_files(paths, model_path, out_dir, spacing_mm=None, device="cpu", on_error=None,
                 orientation_check: bool = True, overlay: bool = True, heatmaps: bool = False,
                 progress=None) -> list:
    """The CLI's detect: NAME.json, NAME.mrk.json and NAME.png per image; returns the paths written.

    overlay=False skips the PNG; heatmaps=True adds NAME.heatmaps.npz (detection.save_heatmaps),
    which the Slicer module reads.  progress(fraction, stage) is told how far the run is.
    Each output file is written atomically.  A bad image is reported through `on_error(message)`
    and skipped; if any failed, CephError is raised at the end.
    """
    from .detection import HEATMAPS_SUFFIX, save_heatmaps
    from .outputs import write_detection

    report = progress or (lambda fraction, stage: None)
    stems = [output_stem(p) for p in paths]
    if len(set(stems)) != len(stems):
        raise CephError("two input images have the same name; their outputs would overwrite each other")
    report(0.0, "loading the model")
    detector = LandmarkDetector(model_path, device, orientation_check)
    written, failed = [], []
    for k, (stem, path) in enumerate(zip(stems, paths)):
        try:
            report((k + 0.1) / len(paths), f"reading {Path(path).name}")
            rad = read_radiograph(path, spacing_mm)
            report((k + 0.2) / len(paths), f"detecting on {Path(path).name}")
            detection = detector.detect(rad)
            report((k + 0.8) / len(paths), "writing the results")
            written += write_detection(detection, rad, Path(out_dir), stem, overlay)
            if heatmaps:
                save_heatmaps(Path(out_dir) / f"{stem}{HEATMAPS_SUFFIX}", detection)
                written.append(Path(out_dir) / f"{stem}{HEATMAPS_SUFFIX}")
        except CephError as e:
            failed.append(str(path))
            if on_error is None or len(paths) == 1:
                raise
            on_error(str(e))
    report(1.0, "done")
    if failed:
        raise CephError(f"{len(failed)} of {len(paths)} images failed: {', '.join(failed)}")
    return written


def output_stem(path) -> str:
    """NAME of NAME.json and the other outputs: the file name up to its first dot."""
    return Path(path).name.split(".")[0]
