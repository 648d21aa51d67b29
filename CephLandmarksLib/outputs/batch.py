"""The commands that run the predictor and write for a user: `detect` on a list of files, and
`report` on one image (report_file).

detect: one model load (on the CPU with several images, one in each worker process: processes.py);
per image NAME.json, NAME.mrk.json, NAME.png (and NAME.heatmaps.npz), written whole-or-nothing; a bad
image is reported and the batch goes on.

Never a lost file:
- an output that would replace an input image (same path, link or hard link; e.g. the overlay
  `xray.png` of `detect xray.png` in the image's own folder) refuses the whole run before anything runs;
- an existing file at an output's name is replaced only when it is an earlier output of ours
  (outputs.is_own_output); any other refuses that image, naming the file;
- each image's files go to temporary names and are renamed together when all are written;
  on an error, Ctrl-C or SIGTERM (the CLI turns it into an exception) no temporary file is left.
"""

import os
import warnings
from pathlib import Path

import numpy as np

from ..cephalometry.measurement_uncertainty import DEFAULT_SAMPLES, DEFAULT_SEED, measure_detection
from ..errors import CephError
from ..files import check_replaceable, is_tagged
from ..imaging.images import read_radiograph, user_spacing


def output_stem(path) -> str:
    """NAME of NAME.json and the other outputs: the file name up to its first dot, leading dots
    skipped (an image named `.png` gives `png`); `image` if nothing is left."""
    return Path(path).name.lstrip(".").split(".")[0] or "image"


def _file_keys(path) -> set:
    """What identifies a file: its resolved path and, if it exists, its (device, inode).  os.path.realpath,
    not Path.resolve: a symbolic-link loop (`ln -s b.png a.png; ln -s a.png b.png`) must not raise here
    but reach read_radiograph, which refuses that one file with one line."""
    keys = {os.path.realpath(path)}
    try:
        st = os.stat(path)
        keys.add((st.st_dev, st.st_ino))
    except OSError:
        pass
    return keys


def check_inputs_kept(inputs, outputs) -> None:
    """CephError when any output path names one of the input files (by resolved path or inode)."""
    taken = {}
    for p in inputs:
        for key in _file_keys(p):
            taken[key] = p
    for out in outputs:
        for key in _file_keys(out):
            if key in taken:
                raise CephError(f"the output {out} would replace the input image {taken[key]}; "
                                "choose another output folder (--out-dir)")


def check_out_dir(out_dir) -> None:
    """CephError when the output folder exists as something other than a folder."""
    if os.path.lexists(out_dir) and not Path(out_dir).is_dir():
        raise CephError(f"--out-dir {out_dir} is not a folder")


def quietly(fn, *args, **kw):
    """fn(*args, **kw) with Python warnings (NumPy's on flat heatmaps, matplotlib's, torch's) silenced:
    the CLI's stderr holds only its own words."""
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")
        return fn(*args, **kw)


def add_analyses(detection, options, image_path) -> None:
    """The detection's "analyses" sections (19 ISBI landmarks only), with the DICOM's age and sex if not given."""
    from ..cephalometry.detection_analyses import AnalysisOptions, analyses_sections, with_patient

    if len(detection.landmarks) == 19:
        options = with_patient(options or AnalysisOptions(), image_path)
        detection.extra.update(quietly(analyses_sections, detection, options))


def _unexpected(path, e: Exception) -> CephError:
    """A failure the checks did not foresee, as one line naming the image (the batch goes on)."""
    return CephError(f"detection failed on {path}: {type(e).__name__}: "
                     f"{str(e).splitlines()[0][:200] if str(e) else ''}")


def _guarded(path, fn, *args):
    """quietly(fn, *args); a failure the checks did not foresee becomes a CephError naming the image."""
    try:
        return quietly(fn, *args)
    except CephError:
        raise
    except (ArithmeticError, MemoryError, ValueError, RuntimeError, IndexError) as e:
        raise _unexpected(path, e) from e


def _write(detection, rad, path, out_dir, stem, overlay, heatmaps, analysis_options=None) -> list:
    """One image's outputs, whole-or-nothing (the measurements are sampled here, at write time)."""
    from ..files import write_group
    from .writers import detection_writers

    def write():
        add_analyses(detection, analysis_options, path)
        return write_group(detection_writers(detection, rad, out_dir, stem, overlay, heatmaps))

    return _guarded(path, write)


def _detect_and_write(detector, rad, path, out_dir, stem, overlay, heatmaps, writing, analysis_options=None) -> list:
    """One image's detection and its outputs (whole-or-nothing); an unforeseen failure becomes a CephError."""
    detection = _guarded(path, detector.detect, rad)
    writing()
    return _write(detection, rad, path, out_dir, stem, overlay, heatmaps, analysis_options)


def _one_image(detector, job, settings, stage) -> list:
    """One image, as `detect` does it in every path: its output names checked, read, detected and
    written (whole-or-nothing); stage(text) is told each step.  A bad image raises CephError."""
    from .writers import check_outputs_replaceable

    stem, path, outs = job
    spacing, out_dir, overlay, heatmaps, analysis_options = settings
    check_outputs_replaceable(outs)
    stage(f"reading {Path(path).name}")
    rad = read_radiograph(path, spacing)
    stage(f"detecting on {Path(path).name}")
    return _detect_and_write(detector, rad, path, out_dir, stem, overlay, heatmaps,
                             lambda: stage("writing the results"), analysis_options)


def _worker_init(model_path, device, orientation_check, refiner_path, settings):
    """A worker process's start-up (outputs/processes.py): one torch thread (the workers share the
    cores), the detector loaded once, warmed up.  Returns the state _worker_image reads."""
    import torch

    from .loaded_detector import load_detector

    torch.set_num_threads(1)
    refiner = None
    if refiner_path:
        from ..store.refinerfile import load_refiner

        refiner = load_refiner(refiner_path, device)
    detector = load_detector(model_path, device, orientation_check, refiner)
    _warm_up(detector)
    return detector, settings


def _warm_up(detector) -> None:
    """What a process does once, before its first image, done at a worker's start-up: the readers', the
    overlay's and the regions' libraries imported, matplotlib's fonts loaded (a small figure drawn),
    the analyses read, and one forward on a blank canvas (torch sets up its kernels on the first).
    Nothing here changes an answer: the files are those of a cold process."""
    import io

    import contourpy  # noqa: F401
    import SimpleITK  # noqa: F401
    import torch
    from matplotlib import patches, patheffects  # noqa: F401
    from matplotlib.figure import Figure
    from scipy import ndimage  # noqa: F401

    from ..cephalometry import detection_analyses, measurement_uncertainty  # noqa: F401
    from ..cephalometry.analyses import shipped_catalogue
    from ..network.model import run_network
    from . import plots, writers  # noqa: F401

    shipped_catalogue()
    fig = Figure(figsize=(1, 1))
    fig.text(0.5, 0.5, "warm-up")
    fig.savefig(io.BytesIO(), format="png")
    w, h = detector.info.input_size
    with torch.inference_mode():
        run_network(detector.model.net, torch.zeros(1, 1, h, w), detector.device)


def _worker_image(state, job, stage) -> list:
    detector, settings = state
    return _one_image(detector, job, settings, stage)


def _use_processes(paths, device, on_error, pipelined, workers, refiner) -> bool:
    """Whether detect_files runs its images in worker processes: several images on the CPU, more than
    one worker, errors reported per image (on_error), and no detector kept loaded in this process
    (the Slicer worker's, loaded_detector.keep_loaded) nor a refiner known only in memory."""
    from .loaded_detector import keeps_loaded

    return (pipelined and len(paths) > 1 and on_error is not None and workers > 1 and str(device) == "cpu"
            and not keeps_loaded() and (refiner is None or bool(getattr(refiner, "path", ""))))


def detect_files(paths, model_path, out_dir, spacing_mm=None, device="cpu", on_error=None,
                 orientation_check: bool = True, overlay: bool = True, heatmaps: bool = False,
                 progress=None, analysis_options=None, pipelined: bool = True, refiner=None,
                 workers: int | None = None) -> list:
    """The CLI's detect: NAME.json, NAME.mrk.json and NAME.png per image; returns the paths written.

    pipelined (several images): on the CPU, `workers` processes (default: processes.default_workers,
    one per core up to MAX_WORKERS), each with one torch thread and its own model, each doing whole
    images (outputs/processes.py); with one worker, on another device or with a detector kept loaded
    (the Slicer worker), reading, the network and writing overlap in this process
    (outputs/pipeline.py).  Either way the files written are byte for byte those of one image after
    another (pipelined=False), and bad images are reported in the inputs' order.

    overlay=False skips the PNG; heatmaps=True adds NAME.heatmaps.npz (detection.save_heatmaps),
    which the Slicer module reads.  progress(fraction, stage) is told how far the run is.
    analysis_options (cephalometry.detection_analyses.AnalysisOptions): the named analyses in the
    JSON and their lines on the overlay (default: the default set, shipped norms).
    A bad image is reported through `on_error(message)` and skipped; if any failed, CephError is
    raised at the end.  See the module's docstring for the rules that keep every file safe.
    refiner: the second stage (store.refinerfile.LoadedRefiner) or None (`detect --refine`).
    """
    from .loaded_detector import load_detector
    from .processes import default_workers
    from .writers import output_paths

    report = progress or (lambda fraction, stage: None)
    spacing = None if spacing_mm is None else user_spacing(spacing_mm, "--spacing")
    check_out_dir(out_dir)
    stems = [output_stem(p) for p in paths]
    if len(set(stems)) != len(stems):
        raise CephError("two input images have the same name; their outputs would overwrite each other")
    planned = [output_paths(out_dir, stem, overlay, heatmaps) for stem in stems]
    check_inputs_kept(paths, [p for outs in planned for p in outs])
    workers = default_workers(len(paths)) if workers is None else workers
    report(0.0, "loading the model")
    if _use_processes(paths, device, on_error, pipelined, workers, refiner):
        return _detect_in_processes(paths, model_path, out_dir, spacing, device, on_error, orientation_check,
                                    overlay, heatmaps, report, analysis_options, refiner, workers, stems, planned)
    detector = load_detector(model_path, device, orientation_check, refiner)  # a bad model stops the run first
    written, failed = [], []

    def fail(path, error: CephError):
        failed.append(str(path))
        if on_error is None or len(paths) == 1:
            raise error
        on_error(str(error))

    jobs = list(zip(stems, paths, planned, strict=True))
    if pipelined and len(paths) > 1 and on_error is not None:
        from .batch_pipeline import detect_pipelined

        written = detect_pipelined(detector, jobs, spacing, out_dir, overlay, heatmaps, analysis_options, report, fail,
                                   guarded=_guarded, write_one=_write)
        failed.sort(key=[str(p) for p in paths].index)  # the summary in the inputs' order
    else:
        settings = (spacing, out_dir, overlay, heatmaps, analysis_options)
        for k, job in enumerate(jobs):
            def stage(text, k=k):
                report((k + _STAGE_SHARE.get(text.split(" ")[0], 0.0)) / len(paths), text)

            try:
                written += _one_image(detector, job, settings, stage)
            except CephError as e:
                fail(job[1], e)
    return _finish(paths, written, failed, report)


_STAGE_SHARE = {"reading": 0.1, "detecting": 0.2, "writing": 0.8}  # how far into an image each step is


def _finish(paths, written, failed, report) -> list:
    report(1.0, "done")
    if failed:
        raise CephError(f"{len(failed)} of {len(paths)} images failed: {', '.join(failed)}")
    return written


def _detect_in_processes(paths, model_path, out_dir, spacing, device, on_error, orientation_check, overlay,
                         heatmaps, report, analysis_options, refiner, workers, stems, planned) -> list:
    """detect_files on worker processes (outputs/processes.py): each image whole in one worker, the
    outcomes taken in the inputs' order.  The progress is the share of images finished."""
    from .processes import run_in_processes

    n = len(paths)
    jobs = list(zip(stems, paths, planned, strict=True))
    settings = (spacing, out_dir, overlay, heatmaps, analysis_options)
    init_args = (str(model_path), str(device), orientation_check, refiner.path if refiner is not None else None,
                 settings)
    written, failed, finished = [], [], set()

    def done(k, value):
        finished.add(k)
        written.extend(value)

    def error(k, e):
        finished.add(k)
        failed.append(str(paths[k]))
        on_error(str(e))

    run_in_processes(jobs, _worker_init, init_args, _worker_image, done, error, workers=workers,
                     on_stage=lambda k, text: report(len(finished) / n, text),
                     on_ready=lambda seconds: report(0.0, f"{workers} workers ready"))
    return _finish(paths, written, failed, report)


def report_file(image, model_path, out_dir=".", spacing_mm=None, device="cpu",
                n: int = DEFAULT_SAMPLES, seed: int = DEFAULT_SEED, analysis_options=None, progress=None,
                refiner=None) -> list:
    """The CLI's report: detect on one image, measure, write the page; returns the paths.
    progress(fraction, stage) is told how far it is.  refiner: the second stage (LoadedRefiner) or None."""
    from ..detection.predictor import LandmarkDetector
    from .report import report_paths, write_report

    spacing = None if spacing_mm is None else user_spacing(spacing_mm, "--spacing")
    check_out_dir(out_dir)
    stem = output_stem(image)
    check_inputs_kept([image], report_paths(out_dir, stem))
    for path in report_paths(out_dir, stem):
        check_replaceable(path, is_tagged)
    report = progress or (lambda fraction, stage: None)
    report(0.0, f"reading {Path(image).name}")
    rad = read_radiograph(image, spacing)
    report(0.05, "loading the model")
    detector = LandmarkDetector(model_path, device, refiner=refiner)
    report(0.2, f"detecting on {Path(image).name}")
    detection = quietly(detector.detect, rad)
    if len(detection.landmarks) != 19:
        raise CephError(f"the report needs the 19 ISBI landmarks; the model gives {len(detection.landmarks)}")
    report(0.5, "measuring")
    results = quietly(measure_detection, detection, n, seed)
    add_analyses(detection, analysis_options, image)
    report(0.8, "writing the report")
    written = quietly(write_report, rad.pixels, detection, results, out_dir, stem)
    report(1.0, "done")
    return written
