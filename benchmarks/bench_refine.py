"""Seconds per image that the second stage adds to detection: the 19 crops sampled, the refiner's one
forward, the combined map built, on an ISBI-sized image (1935 x 2400 at 0.1 mm), beside the first
stage's forward at 384 x 480 timed in the same run (their ratio holds better on a busy machine).

    python benchmarks/bench_refine.py [--refiner FILE] [--threads 2] [--n 5]
    python benchmarks/bench_refine.py --detect 4 [--model M] [--refiner FILE] [--threads 2] [--n 3]

The figure depends on the network's size, not its weights: without --refiner a randomly
initialised refiner of the default size is timed.  Reads no data.

--detect N: the whole cost as `detect --refine` pays it, on N ISBI training images (../shared): the
shipped model's LandmarkDetector with and without the refiner, interleaved, each image's median of
--n runs; per stage the extra seconds of detect() (the crops and forward in observe, the combined
map and its ERE, P and region extents in decide), of drawing every contour (the overlay does), and
of the 2000 measurement draws (detect's writer makes them).
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

ISBI_TRAINING = Path(__file__).resolve().parents[2] / "shared" / "data" / "isbi2015" / "RawImage" / "TrainingData"


def detect_cost(a):
    """The second stage's cost through the predictor (--detect): see the module's docstring."""
    from CephLandmarksLib.cephalometry.measurement_uncertainty import sample_landmarks_mm
    from CephLandmarksLib.cli import default_model_path
    from CephLandmarksLib.detection.predictor import LandmarkDetector
    from CephLandmarksLib.imaging.images import read_radiograph

    images = sorted(ISBI_TRAINING.glob("*.jpg"))[: a.detect] if ISBI_TRAINING.is_dir() else []
    if not images:
        sys.exit(f"no ISBI training images in {ISBI_TRAINING}")
    model = a.model or default_model_path()
    plain = LandmarkDetector(model)
    abbreviations = list(plain.info.landmark_abbreviations)
    ref = load_refiner(a.refiner) if a.refiner else \
        LoadedRefiner(RefinerNet().eval(), RefinerInfo(abbreviations), "", "")
    refined = LandmarkDetector(model, refiner=ref)

    def stages(det, rad):
        t0 = time.perf_counter()
        d = det.detect(rad)
        t1 = time.perf_counter()
        for lm in d.landmarks:
            dict(lm.contours_px)
        t2 = time.perf_counter()
        sample_landmarks_mm(d, 2000)
        t3 = time.perf_counter()
        return np.array([t1 - t0, t2 - t1, t3 - t2])

    extra, base, fine_s, refined_n = [], [], [], []
    for path in images:
        rad = read_radiograph(path)
        stages(plain, rad), stages(refined, rad)  # warm up
        runs = {"plain": [], "refined": []}
        for k in range(a.n):  # interleaved, alternating which goes first
            for name, det in (("plain", plain), ("refined", refined))[:: 1 if k % 2 == 0 else -1]:
                runs[name].append(stages(det, rad))
        p, r = np.median(runs["plain"], axis=0), np.median(runs["refined"], axis=0)
        base.append(p)
        extra.append(r - p)
        inputs = refined.inputs(rad)
        probs, frame = refined.heatmaps(inputs)
        t = time.perf_counter()
        refined._observe_fine(inputs, probs, frame)
        fine_s.append(time.perf_counter() - t)
        refined_n.append(refined.detect(rad).refiner["refined"])
        print(f"{path.name}: detect {p[0]:.3f} s, +{r[0] - p[0]:.3f} s refined ({refined_n[-1]} of 19 points "
              f"fine); contours {p[1]:.3f} s +{r[1] - p[1]:.3f}; draws {p[2]:.3f} s +{r[2] - p[2]:.3f}", flush=True)
    e, b = np.median(extra, axis=0), np.median(base, axis=0)
    print(f"second stage, median over {len(images)} images on {a.threads} threads: detect() +{e[0]:.3f} s "
          f"(of which crops + forward {np.median(fine_s):.3f} s) on {b[0]:.3f} s; contours +{e[1]:.3f} s on "
          f"{b[1]:.3f} s; measurement draws +{e[2]:.3f} s on {b[2]:.3f} s; total +{e.sum():.3f} s per image")


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--refiner", help="a refiner file (default: a random one of the default size)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--n", type=int, default=5)
    p.add_argument("--detect", type=int, metavar="N", help="time detect with and without the refiner on N ISBI images")
    p.add_argument("--model", help="with --detect: the model (default: the shipped one)")
    a = p.parse_args(argv)
    torch.set_num_threads(a.threads)
    if a.detect:
        return detect_cost(a)
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
