"""Time `detect` per image on the CPU, stage by stage; the ratio R of detect() to the network's own
time; vectorised ERE against a per-pixel loop.

    python benchmarks/bench_detect.py [--model M] [--images DIR_OR_FILES...] [--n 5] [--repeats 3]

Prints a table of median seconds per image: reading, preprocessing + model forward,
decoding + ERE + P(error > 4 mm), credible contours (computed only when something draws them),
detect() and writing the three outputs; how many images needed the mirrored pass of the
orientation check and the aligned pass; and, last, `detect/forward ratio R; batch speed-up B`:
R is the median over the first 4 images of detect() wall time / that image's preprocess +
forward time (`det.heatmaps`), both timed in this process, interleaved, each the median of
--repeats runs (issue 28's definition).  B comes from `batch_speedup` (bench_batch.py: sequential
read + detect + write against the batch path of `detect`, worker processes, on 20 images; the
workers' one-off start-up is left out, as the sequential model load is, and printed beside it).
Without --images it uses ISBI Test1 images from ../shared when present, else synthetic images.
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
from CephLandmarksLib.detection.predictor import LandmarkDetector  # noqa: E402
from CephLandmarksLib.imaging.images import read_radiograph  # noqa: E402
from CephLandmarksLib.network.heatmaps import decode_points  # noqa: E402
from CephLandmarksLib.outputs.writers import write_detection  # noqa: E402
from CephLandmarksLib.uncertainty.measures import error_probability, expected_radial_error_mm  # noqa: E402
from CephLandmarksLib.uncertainty.regions import drawn_regions  # noqa: E402

ISBI = Path(__file__).resolve().parents[2] / "shared" / "data" / "isbi2015" / "RawImage" / "Test1Data"


def ere_loop(p, point, mm):
    """The paper's code's approach: a Python loop over pixels (in float64, as the vectorised ERE)."""
    p = np.asarray(p, dtype=np.float64)
    m = p.max()
    total = acc = 0.0
    for y in range(p.shape[0]):
        for x in range(p.shape[1]):
            if p[y, x] >= 0.05 * m:
                total += p[y, x]
                acc += p[y, x] * np.hypot((x - point[0]) * mm[0], (y - point[1]) * mm[1])
    return acc / total


def timed(fn):
    t = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t


def time_stages(det, p, out_dir) -> tuple:
    """(seconds of each stage on the image p: read, forward, decode, ERE, P, contours (as drawn, all
    maps), detect(), write; the image and what the stages made of it: (rad, probs, frame, uv), and
    the detection)."""
    rad, t_read = timed(lambda: read_radiograph(p))
    (probs, frame), t_fwd = timed(lambda: det.heatmaps(rad))
    uv, t_dec = timed(lambda: decode_points(probs[None], det.info.refine_radius)[0].numpy())
    mm = frame.model_pixel_mm(rad.spacing_mm)
    _, t_ere = timed(lambda: expected_radial_error_mm(probs, uv, mm))
    _, t_p = timed(lambda: error_probability(probs, uv, mm))
    pn = probs.numpy()
    masses = det.settings.region_masses
    _, t_cont = timed(lambda: [drawn_regions(pn[i], {k: m[i] for k, m in masses.items()}, mm) for i in range(len(pn))])
    d, t_all = timed(lambda: det.detect(rad))
    _, t_write = timed(lambda: write_detection(d, rad, out_dir, Path(p).stem))
    return (t_read, t_fwd, t_dec, t_ere, t_p, t_cont, t_all, t_write), (rad, probs, frame, uv), d


def passes(det, rad) -> tuple[bool, bool]:
    """(the orientation check ran the mirrored pass, an aligned pass ran) for one image: the
    forwards detect() makes beyond the first."""
    calls = []
    run = det._run

    def counting(x, frame):
        calls.append(frame)
        return run(x, frame)

    det._run = counting
    try:
        det.observe(rad)
    finally:
        det._run = run
    mirrored = any(f.mirror_x for f in calls)
    return mirrored, len(calls) - 1 - int(mirrored) > 0


def detect_forward_ratio(det, paths, repeats: int = 3) -> tuple[float, list]:
    """R: the median over images of detect() wall time / preprocess + forward time (det.heatmaps),
    interleaved in this process, each the median of `repeats`; and the per-image ratios."""
    ratios = []
    for p in paths:
        rad = read_radiograph(p)
        fwd, full = [], []
        for _ in range(repeats):
            fwd.append(timed(lambda rad=rad: det.heatmaps(rad))[1])
            full.append(timed(lambda rad=rad: det.detect(rad))[1])
        ratios.append(float(np.median(full) / np.median(fwd)))
    return float(np.median(ratios)), ratios


def batch_speedup(det, paths):
    """B, the batch path's speed-up over sequential read + detect + write on 20 ISBI Test1 images
    (bench_batch.py; it prints the throughput line); over `paths` without ISBI."""
    from bench_batch import batch_speedup as measure
    from bench_batch import default_paths

    return measure(det.model.path, default_paths(20) or paths)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model")
    ap.add_argument("--images", nargs="*")
    ap.add_argument("--n", type=int, default=5)
    ap.add_argument("--repeats", type=int, default=3, help="timings per image for R (their median)")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    a = ap.parse_args()
    if a.threads:
        torch.set_num_threads(a.threads)
    det = LandmarkDetector(a.model or default_model_path())
    paths = a.images or sorted(ISBI.glob("*.jpg"))[: a.n]
    if not paths:
        import SimpleITK as sitk

        tmp = Path(tempfile.mkdtemp())
        for i in range(a.n):
            sitk.WriteImage(sitk.GetImageFromArray((np.random.rand(2400, 1935) * 255).astype(np.uint8)),
                            str(tmp / f"synthetic{i}.png"))
        paths = sorted(tmp.glob("*.png"))
    det.detect(read_radiograph(paths[0]))  # warm-up
    rows, n_mirrored, n_aligned = [], 0, 0
    out_dir = Path(tempfile.mkdtemp())
    for p in paths[: a.n]:
        seconds, (rad, probs, frame, uv), _ = time_stages(det, p, out_dir)  # the last image's serve the ERE check
        rows.append(seconds)
        mirrored, aligned = passes(det, rad)
        n_mirrored, n_aligned = n_mirrored + mirrored, n_aligned + aligned
    r = np.median(np.array(rows), axis=0)
    w, h = det.info.input_size
    print(f"model input {w} x {h}, torch threads {torch.get_num_threads()}, {len(rows)} images, "
          "median seconds per image")
    print("| stage | seconds |\n|---|---|")
    for name, v in zip(["read image", "preprocess + network forward", "argmax + sub-pixel (19 maps)",
                        "ERE (19 maps, vectorised)", "P(error > 4 mm) (19 maps)",
                        "credible regions as drawn (19 maps x 2; only when drawn)", "detect() total",
                        "write JSON + markups + PNG"], r, strict=True):
        print(f"| {name} | {v:.3f} |")
    print(f"| **detect + write** | **{r[0] + r[6] + r[7]:.3f}** |")
    print(f"\nforwards beyond the first: mirrored pass (orientation unclear) on {n_mirrored} of {len(rows)} images, "
          f"aligned pass on {n_aligned} of {len(rows)}")
    pn = probs.numpy()
    mm = frame.model_pixel_mm(rad.spacing_mm)
    fast, t_fast = timed(lambda: expected_radial_error_mm(pn, uv, mm))
    slow, t_slow = timed(lambda: [ere_loop(pn[i], uv[i], mm) for i in range(2)])
    assert np.allclose(fast[:2], slow, rtol=1e-8)
    print(f"\nERE for one image: vectorised {t_fast * 1000:.1f} ms for 19 maps; "
          f"per-pixel Python loop {t_slow / 2 * 19:.1f} s for 19 maps (measured on 2) "
          f"-> {t_slow / 2 * 19 / t_fast:.0f}x faster; same values")
    ratio, ratios = detect_forward_ratio(det, paths[:4], a.repeats)
    print(f"\ndetect() / (preprocess + forward) per image: {', '.join(f'{x:.2f}' for x in ratios)}")
    b = batch_speedup(det, paths)
    print(f"detect/forward ratio R {ratio:.2f}; batch speed-up B {'n/a' if b is None else f'{b:.2f}'}")


if __name__ == "__main__":
    main()
