"""The batch path of `detect` against one image after another, and batched network forwards.

    python benchmarks/bench_batch.py [--model M] [--images FILES...] [--n 20] [--rounds 2]
    python benchmarks/bench_batch.py --forwards [--batches 1 2 4]

B (issue 28) is the sequential seconds per image (read + detect + write, one image after another:
detect_files(pipelined=False), torch's default threads) divided by the batch path's (detect_files,
pipelined: on the CPU, one worker process per core, each with one torch thread, each doing whole
images) on the same images in the same run; the runs alternate (sequential, batch, batch,
sequential, ...) so that a drift of the machine's speed falls on both.  Each path's start-up is
not counted: each is timed from the first progress report after "loading the model", which is,
sequentially, the model loaded in this process and, on the batch path, every worker started
(a fresh interpreter, torch's import, the model's load and the warm-up a process does before its
first image, batch._warm_up: the readers', overlay's and regions' libraries, one blank forward; in
each worker at once; the sequential path runs in this process, warm when bench_detect.py calls it).  That
start-up is paid once per run, like the sequential model load; its seconds are printed beside B.
bench_detect.py prints its line and B.

--forwards times the network alone on batches of 1, 2 and 4 inputs of the model's size: whether
batching forwards helps on this device.
"""

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from CephLandmarksLib.cli import default_model_path  # noqa: E402
from CephLandmarksLib.outputs.batch import detect_files  # noqa: E402
from CephLandmarksLib.outputs.processes import default_workers  # noqa: E402

ISBI = Path(__file__).resolve().parents[2] / "shared" / "data" / "isbi2015" / "RawImage" / "Test1Data"


def timed_run(model, paths, pipelined: bool) -> tuple[float, float]:
    """(seconds of detect_files on `paths` (into a fresh folder) from the model being loaded (the
    workers started) to the end; seconds of that start-up)."""
    marks = []

    def progress(fraction, stage):
        marks.append((time.perf_counter(), stage))

    with tempfile.TemporaryDirectory() as out:
        detect_files(paths, model, out, on_error=print, progress=progress, pipelined=pipelined)
        end = time.perf_counter()
    start = next(t for t, stage in marks if stage == "loading the model")
    loaded = next(t for t, stage in marks if stage != "loading the model")
    return end - loaded, loaded - start


def batch_speedup(model, paths, rounds: int = 2) -> float:
    """B over `paths`, from `rounds` pairs of runs in ABBA order; prints the throughput line and the
    start-ups left out of it."""
    seconds, startup = {False: [], True: []}, {False: [], True: []}
    for r in range(rounds):
        for pipelined in ((False, True) if r % 2 == 0 else (True, False)):
            run, start = timed_run(model, paths, pipelined)
            seconds[pipelined].append(run)
            startup[pipelined].append(start)
    seq, batch = (float(np.median(seconds[k])) / len(paths) for k in (False, True))
    print(f"batch throughput on {len(paths)} images ({rounds} runs each, interleaved): sequential "
          f"{1 / seq:.2f} images/s ({seq:.2f} s an image), batch path {1 / batch:.2f} images/s "
          f"({batch:.2f} s an image, {default_workers(len(paths))} worker processes of 1 torch thread); "
          f"start-up, not counted: model load {np.median(startup[False]):.2f} s sequentially, "
          f"workers started {np.median(startup[True]):.2f} s on the batch path")
    return seq / batch


def forward_seconds(model, batches=(1, 2, 4), repeats: int = 3) -> dict:
    """Seconds per image of the network's forward alone, by batch size (the model's input size)."""
    from CephLandmarksLib.store.modelfile import load_model

    loaded = load_model(model)
    net = loaded.net.eval()
    w, h = loaded.info.input_size
    out = {}
    with torch.inference_mode():
        net(torch.rand(1, 1, h, w))  # warm-up
        for b in batches:
            x = torch.rand(b, 1, h, w)
            runs = []
            for _ in range(repeats):
                t = time.perf_counter()
                net(x)
                runs.append(time.perf_counter() - t)
            out[b] = float(np.median(runs)) / b
    return out


def default_paths(n: int) -> list:
    return sorted(ISBI.glob("*.bmp"))[:n] or sorted(ISBI.glob("*.jpg"))[:n]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model")
    ap.add_argument("--images", nargs="*")
    ap.add_argument("--n", type=int, default=20)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--forwards", action="store_true", help="time batched forwards instead")
    ap.add_argument("--batches", type=int, nargs="*", default=[1, 2, 4])
    a = ap.parse_args()
    model = a.model or default_model_path()
    if a.forwards:
        for b, s in forward_seconds(model, a.batches).items():
            print(f"batch {b}: {s:.3f} s an image (network forward, torch threads {torch.get_num_threads()})")
        return
    paths = a.images or default_paths(a.n)
    if not paths:
        sys.exit("no images: give --images, or put ISBI 2015 in ../shared/data/isbi2015")
    print(f"batch speed-up B {batch_speedup(model, paths, a.rounds):.2f}")


if __name__ == "__main__":
    main()
