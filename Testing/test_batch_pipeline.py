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


# --- detect on many files in worker processes (outputs/processes.py) ---

@pytest.mark.slow
def test_worker_processes_write_the_files_of_one_image_after_another(untrained, tmp_path):
    """Two worker processes, each with one torch thread: the same files byte for byte, the bad image
    reported once in the inputs' order, the summary at the end, the written paths in order."""
    paths = _images(tmp_path / "in", 4)
    bad = tmp_path / "in" / "bad.png"
    bad.write_bytes(b"not an image")
    order = [paths[0], bad, *paths[1:]]
    outs = {}
    for workers in (1, 2):
        errors, stages = [], []
        out = tmp_path / f"out_{workers}"
        with pytest.raises(CephError, match=r"1 of 5 images failed: .*bad\.png"):
            detect_files(order, untrained, out, spacing_mm=0.4, on_error=errors.append, heatmaps=True,
                         pipelined=workers > 1, workers=workers,
                         progress=lambda f, s, stages=stages: stages.append((f, s)))
        outs[workers] = (_files(out), errors)
        fractions = [f for f, _ in stages]
        assert fractions == sorted(fractions) and stages[-1] == (1.0, "done")
    (seq, seq_errors), (procs, proc_errors) = outs[1], outs[2]
    assert len(seq) == 4 * 4 and seq.keys() == procs.keys()
    for name in seq:
        assert seq[name] == procs[name], name
    assert len(proc_errors) == 1 and "bad.png" in proc_errors[0] and proc_errors == seq_errors


def test_processes_are_used_only_where_they_help():
    from CephLandmarksLib.outputs import loaded_detector
    from CephLandmarksLib.outputs.batch import _use_processes

    two = ["a.png", "b.png"]
    assert _use_processes(two, "cpu", print, True, 2, None)
    assert not _use_processes(two[:1], "cpu", print, True, 2, None)  # one image: in this process
    assert not _use_processes(two, "cpu", print, True, 1, None)  # workers=1
    assert not _use_processes(two, "cpu", print, False, 2, None)  # one after another
    assert not _use_processes(two, "cpu", None, True, 2, None)  # the first bad image stops the run
    assert not _use_processes(two, "cuda", print, True, 2, None)  # one device: batch there instead
    saved = loaded_detector._kept
    try:
        loaded_detector.keep_loaded()  # the Slicer worker keeps its model loaded in its own process
        assert not _use_processes(two, "cpu", print, True, 2, None)
    finally:
        loaded_detector._kept = saved


@pytest.mark.slow
def test_processes_keep_order_and_go_on_after_bad_items():
    import process_tasks as t

    from CephLandmarksLib.outputs.processes import run_in_processes

    done, errors, stages, ready = [], [], [], []
    run_in_processes(range(30), t.init, ("x",), t.square, lambda k, v: done.append((k, v)),
                     lambda k, e: errors.append((k, str(e))), workers=3, window=4,
                     on_stage=lambda k, s: stages.append(s), on_ready=ready.append)
    assert done == [(i, ("x", i * i)) for i in range(30) if i % 7 != 3]
    assert errors == [(i, f"bad item {i}") for i in range(30) if i % 7 == 3]
    assert sorted(stages) == sorted(f"working on {i}" for i in range(30)) and len(ready) == 1


@pytest.mark.slow
def test_processes_stop_on_a_bad_start_an_unforeseen_error_or_a_dead_worker():
    import process_tasks as t

    from CephLandmarksLib.outputs.processes import WorkerFailed, run_in_processes

    with pytest.raises(CephError, match="no such model"):
        run_in_processes(range(5), t.init_fails, ("no such model",), t.square, None, None, workers=2)
    seen = []
    with pytest.raises(OSError, match="No space left"):
        run_in_processes(range(1000), t.init, ("x",), t.crash_at_5, lambda k, v: seen.append(k), None, workers=2)
    # in order, and stopped at the failure (not the 1000): the items before it that another worker had not
    # yet returned when item 5 failed are dropped with the rest (a race)
    assert seen == list(range(len(seen))) and 2 <= len(seen) <= 5  # item 5 went out once 0 and 1 were handed on
    with pytest.raises(WorkerFailed, match="exit code 9"):
        run_in_processes(range(100), t.init, ("x",), t.die_at_2, lambda k, v: None, None, workers=2)


@pytest.mark.slow
def test_an_interruption_stops_every_worker_and_leaves_no_temporary_file(tmp_path):
    """Ctrl-C in the parent while both workers are writing: they are stopped (SIGTERM, which they turn
    into KeyboardInterrupt, so write_group removes its temporary files) and waited for."""
    import multiprocessing

    import process_tasks as t

    from CephLandmarksLib.outputs.processes import run_in_processes

    writing, temps = [], []

    def interrupt(k, text):
        writing.append(k)
        if len(writing) == 2:  # both workers are inside their write, their temporary files on disk
            temps.extend(tmp_path.iterdir())
            raise KeyboardInterrupt

    items = [tmp_path / f"out{i}.json" for i in range(4)]
    start = time.time()
    with pytest.raises(KeyboardInterrupt):
        run_in_processes(items, t.init, ("x",), t.slow_write, lambda k, v: None, None, workers=2, on_stage=interrupt)
    assert time.time() - start < 25  # not the 30 s the writes would take
    assert not multiprocessing.active_children()
    assert sorted(writing) == [0, 1] and len(temps) == 2  # the writes were under way
    assert list(tmp_path.iterdir()) == []


@pytest.mark.slow
def test_memory_stays_bounded_in_processes_on_10000_items():
    """10,000 results of 64 kB, the first one slow: were the other worker let run ahead of it, the
    parent would hold 640 MB of results waiting for their turn; it holds at most `window`."""
    import process_tasks as t

    from CephLandmarksLib.outputs.processes import run_in_processes

    n, seen, peak, base = 10_000, [0], [0], _rss_bytes()

    def done(k, value):
        assert value[0] == k and value[1][0] == k
        seen[0] += 1

    def sample():
        while seen[0] < n:
            peak[0] = max(peak[0], _rss_bytes())
            time.sleep(0.01)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    run_in_processes(range(n), t.init, ("x",), t.results_of_64kb, done, None, workers=2)
    sampler.join(5)
    assert seen[0] == n
    assert (peak[0] - base) / MB < 50, f"{(peak[0] - base) / MB:.0f} MB held over {n} items"
