"""detect on many files through the pipeline (outputs/pipeline.py): the same files, byte for byte, as
one image after another; bad images reported in order while the others go on; memory bounded
however long the batch."""

import os
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from CephLandmarksLib.errors import CephError
from CephLandmarksLib.outputs.batch import detect_files
from CephLandmarksLib.outputs.pipeline import AHEAD, BEHIND, run_pipeline

MB = 1 << 20


def _rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


@pytest.fixture(scope="module")
def untrained(tmp_path_factory):
    from CephLandmarksLib.network.model import build_model
    from CephLandmarksLib.store.modelfile import ModelInfo, save_model

    path = tmp_path_factory.mktemp("model") / "untrained.safetensors"
    save_model(path, build_model(), ModelInfo(name="untrained", input_size=(64, 64), model_mm_per_px=1.5))
    return path


def _images(folder: Path, n: int) -> list:
    from conftest import synthetic_image, write_png

    folder.mkdir()
    paths = []
    for i in range(n):
        paths.append(folder / f"img{i}.png")
        write_png(paths[-1], synthetic_image(np.random.default_rng(i))[0])
    return paths


def _files(folder: Path) -> dict:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


def test_pipelined_outputs_are_those_of_one_image_after_another(untrained, tmp_path):
    paths = _images(tmp_path / "in", 5)
    bad = tmp_path / "in" / "bad.png"
    bad.write_bytes(b"not an image")
    order = [paths[0], bad, *paths[1:]]
    results = {}
    for pipelined in (False, True):
        errors = []
        out = tmp_path / f"out_{pipelined}"
        with pytest.raises(CephError, match="1 of 6 images failed"):
            detect_files(order, untrained, out, spacing_mm=0.4, on_error=errors.append, heatmaps=True,
                         pipelined=pipelined)
        results[pipelined] = (_files(out), errors)
    (seq, seq_errors), (pipe, pipe_errors) = results[False], results[True]
    assert len(seq) == 5 * 4 and seq.keys() == pipe.keys()
    for name in seq:  # no timestamps in these files: every byte must agree
        assert seq[name] == pipe[name], name
    assert len(pipe_errors) == 1 and "bad.png" in pipe_errors[0] and pipe_errors == seq_errors


def test_pipeline_keeps_order_and_goes_on_after_bad_items():
    written, errors = [], []

    def read(i):
        if i % 7 == 3:
            raise CephError(f"bad read {i}")
        time.sleep(0.001 * (i % 3))  # readers finish out of order
        return i * 10

    def process(i, v):
        if i % 11 == 5:
            raise CephError(f"bad process {i}")
        return v + 1

    def write(i, r):
        if i == 20:
            raise CephError("bad write 20")
        written.append((i, r))

    run_pipeline(range(40), read, process, write, lambda i, e: errors.append(str(e)))
    bad = {i for i in range(40) if i % 7 == 3 or i % 11 == 5 or i == 20}
    assert written == [(i, i * 10 + 1) for i in range(40) if i not in bad]
    assert sorted(errors) == sorted([f"bad read {i}" for i in range(40) if i % 7 == 3]
                                    + [f"bad process {i}" for i in range(40) if i % 11 == 5 and i % 7 != 3]
                                    + ["bad write 20"])


def test_an_unforeseen_error_in_the_writer_stops_the_run():
    seen = []

    def write(i, r):
        if i == 3:
            raise OSError(28, "No space left on device")
        seen.append(i)

    with pytest.raises(OSError, match="No space left"):
        run_pipeline(range(1000), lambda i: i, lambda i, v: v, write, lambda i, e: None)
    assert seen == [0, 1, 2]


@pytest.mark.slow
def test_memory_stays_bounded_on_a_batch_of_10000_files():
    """10,000 items of 1 MB read and 1 MB processed each: a slow writer and fast readers would hold
    gigabytes if either side were unbounded; the pipeline holds at most AHEAD + BEHIND + 2 items."""
    n, peak, done = 10_000, [0], threading.Event()

    def sample():
        while not done.is_set():
            peak[0] = max(peak[0], _rss_bytes())
            time.sleep(0.002)

    def read(i):
        return np.full(MB // 4, i, np.float32)  # 1 MB, every page touched

    def process(i, v):
        return v * 2

    def write(i, r):
        assert r[0] == 2 * i
        time.sleep(0.0003)  # the writer is the slowest stage

    base = _rss_bytes()
    sampler = threading.Thread(target=sample)
    sampler.start()
    t = time.time()
    try:
        run_pipeline(range(n), read, process, write, lambda i, e: None)
    finally:
        done.set()
        sampler.join()
    held = (peak[0] - base) / MB
    assert held < 4 * (AHEAD + BEHIND + 4), f"{held:.0f} MB held over {n} items"
    assert time.time() - t < 20
