"""detect on many files through the pipeline (pipeline.py): the reader thread checks an image's
output names and read it, this thread runs the network, the writer thread samples the measurements
and writes the files.  The same steps as one image after another (batch.detect_files with
pipelined=False), in the same order, so the files are the same byte for byte."""

import warnings
from pathlib import Path

from ..imaging.images import read_radiograph
from .pipeline import run_pipeline


def detect_pipelined(detector, jobs, spacing, out_dir, overlay, heatmaps, analysis_options, report, fail, *,
                     guarded, write_one) -> list:
    """jobs: (stem, path, output paths) per image; report(fraction, stage); fail(path, CephError) for a
    bad image; guarded(path, fn, *args) and write_one(detection, rad, path, out_dir, stem, overlay, heatmaps,
    analysis_options) are batch.py's own steps (passed in: batch.py imports this module).  Returns the
    paths written, in the images' order."""
    from .writers import check_outputs_replaceable

    n = len(jobs)
    written = []

    def read(item):
        _, (_, path, outs) = item
        check_outputs_replaceable(outs)
        return read_radiograph(path, spacing)

    def detect(item, rad):
        k, (_, path, _) = item
        report(k / n, f"detecting on {Path(path).name}")
        return rad, guarded(path, detector.detect, rad)

    def write(item, result):
        k, (stem, path, _) = item
        rad, detection = result
        report((k + 0.8) / n, "writing the results")
        written.extend(write_one(detection, rad, path, out_dir, stem, overlay, heatmaps, analysis_options))

    # Python's warning filters are global: silenced once here for every thread (batch.quietly's
    # catch_warnings, entered by several threads at once, could restore them out of order).
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        run_pipeline(list(enumerate(jobs)), read, detect, write, lambda item, e: fail(item[1][1], e))
    return written
