"""Seconds per image that the second stage adds to detection: the 19 crops sampled, the refiner's one
forward, the combined map built, on an ISBI-sized image (1935 x 2400 at 0.1 mm), beside the first
stage's forward at 384 x 480 timed in the same run (their ratio holds better on a busy machine).

    python benchmarks/bench_refine.py [--refiner FILE] [--threads 2] [--n 5]

The figure depends on the network's size, not its weights: without --refiner a randomly
initialised refiner of the default size is timed.  Reads no data.
"""

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from CephLandmarksLib.detection.combined_map import combine  # noqa: E402
from CephLandmarksLib.detection.refinement import fine_probs  # noqa: E402
from CephLandmarksLib.imaging.crops import crop_frames  # noqa: E402
from CephLandmarksLib.imaging.geometry import ModelFrame  # noqa: E402
from CephLandmarksLib.network.refiner import RefinerNet  # noqa: E402
from CephLandmarksLib.store.refinerfile import LoadedRefiner, RefinerInfo, load_refiner  # noqa: E402


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--refiner", help="a refiner file (default: a random one of the default size)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--n", type=int, default=5)
    a = p.parse_args(argv)
    torch.set_num_threads(a.threads)
    ref = load_refiner(a.refiner) if a.refiner else \
        LoadedRefiner(RefinerNet().eval(), RefinerInfo([str(i) for i in range(19)]), "", "")
    rng = np.random.default_rng(0)
    image = rng.random((2400, 1935)).astype(np.float32)
    frame = ModelFrame.fit((1935, 2400), (384, 480))
    points = np.column_stack([rng.uniform(300, 1600, 19), rng.uniform(300, 2100, 19)])
    yy, xx = np.mgrid[0:480, 0:384]
    coarse = np.stack([np.exp(-((xx - u) ** 2 + (yy - v) ** 2) / 4.0) for u, v in frame.image_to_model(points)])
    size, mm = (ref.info.crop_size,) * 2, ref.info.crop_mm_per_px
    times = {"crops + forward": [], "combined map": []}
    for _ in range(a.n + 1):  # the first run warms up
        t0 = time.perf_counter()
        crops = crop_frames(points, (0.1, 0.1), size, mm)
        q = fine_probs(ref, image, crops).numpy()
        t1 = time.perf_counter()
        combine(coarse, frame.model_to_image_matrix(), (0.1, 0.1), q, crops, points)
        t2 = time.perf_counter()
        times["crops + forward"].append(t1 - t0)
        times["combined map"].append(t2 - t1)
    from CephLandmarksLib.network.model import build_model

    net, x = build_model().eval(), torch.zeros(1, 1, 480, 384)
    with torch.no_grad():
        coarse_s = []
        for _ in range(a.n):
            t = time.perf_counter()
            net(x)
            coarse_s.append(time.perf_counter() - t)
    for k, v in times.items():
        print(f"{k}: median {np.median(v[1:]):.3f} s")
    second = float(np.median(np.add(*times.values())[1:]))
    print(f"second stage: median {second:.3f} s per image on {a.threads} threads; the first stage's forward at "
          f"384 x 480 on the same machine: {np.median(coarse_s):.3f} s (ratio {second / np.median(coarse_s):.2f})")


if __name__ == "__main__":
    main()
