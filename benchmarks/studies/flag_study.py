"""Flag study: which per-point score best separates large errors from good points?

    python benchmarks/studies/flag_study.py --model M [--dataset DIR] [--out features.npz]

Runs detection on the model's *held-out training images* (never Test1/Test2) under every
shift of the shift benchmark, and records per point the error and candidate error scores:
  ere           the paper's Expected Radial Error (the flag score)
  ere0          ERE without the 5 % floor (all pixels kept)
  farR          probability mass more than R mm from the predicted point, R = 2 ... 8 mm
                (far4 is what detection reports as p_large_error)
  tta           distance (mm) between the prediction and that of a second pass on a frame
                scaled by 0.9 and moved (7, 5) model pixels (test-time augmentation)
Prints, per score, the ROC AUC for errors > 4 mm and the share of points within 2 mm that
are flagged at the threshold that flags 80 % of the errors > 4 mm; saves every feature to
--out for further analysis.  About 8 minutes on 2 CPU cores.  Results: docs/robustness.md.
"""

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the repository root
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # shift_benchmark stays in benchmarks/

from shift_benchmark import ISBI, inside, shifts  # noqa: E402

from CephLandmarksLib.annotations.datasets import load_dataset  # noqa: E402
from CephLandmarksLib.detection.predictor import LandmarkDetector  # noqa: E402
from CephLandmarksLib.imaging.images import Radiograph, normalise, read_radiograph  # noqa: E402
from CephLandmarksLib.network.heatmaps import decode_points  # noqa: E402
from CephLandmarksLib.network.inputs import to_model_input  # noqa: E402
from CephLandmarksLib.uncertainty.measures import error_probability, expected_radial_error_mm  # noqa: E402

TTA_SCALE, TTA_SHIFT = 0.9, (7, 5)
RADII_MM = (2, 3, 4, 5, 6, 8)


def features(det, rad, truth):
    d = det.detect(rad, contours=False)
    pred = d.points_px
    miss = np.array([lm.missing for lm in d.landmarks])
    frame = d.frame
    probs = torch.as_tensor(d.probs)
    uv = frame.image_to_model(np.nan_to_num(pred))
    mm_xy = frame.model_pixel_mm(rad.spacing_mm)
    centre = np.array(frame.model_size) / 2
    moved = frame.moved(TTA_SCALE, (1 - TTA_SCALE) * centre + np.array(TTA_SHIFT))
    p2, _, _ = det._run(to_model_input(normalise(rad.pixels), moved), moved)
    uv2 = decode_points(p2[None], det.info.refine_radius)[0].numpy()
    xy2 = moved.model_to_image(uv2)
    spacing = np.asarray(rad.spacing_mm)
    return dict(
        err=np.linalg.norm((np.nan_to_num(pred) - truth) * spacing, axis=1),
        miss=miss, truth_in=inside(truth, rad.size),
        ere=np.array([lm.ere_mm for lm in d.landmarks]),
        conf=np.array([lm.confidence for lm in d.landmarks]),
        flag=np.array([lm.flagged for lm in d.landmarks]),
        ere0=expected_radial_error_mm(probs, uv, mm_xy, floor=0.0),
        **{f"far{r}": error_probability(probs, uv, mm_xy, r) for r in RADII_MM},
        tta=np.linalg.norm((np.nan_to_num(pred) - xy2) * spacing, axis=1),
        pred_mm=np.nan_to_num(pred) * spacing,
        landmark=np.arange(len(pred)),
    )


def auc(score, pos):
    from scipy.stats import rankdata

    r = rankdata(score)
    n1, n0 = pos.sum(), (~pos).sum()
    return float((r[pos].sum() - n1 * (n1 + 1) / 2) / (n1 * n0))


def tradeoff(score, err, tpr=0.8):
    big, good = err > 4.0, err <= 2.0
    t = np.quantile(score[big], 1 - tpr)
    return float(100 * (score[good] >= t).mean()), float(t)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True)
    ap.add_argument("--dataset", default=str(ISBI))
    ap.add_argument("--out", default="flag_features.npz")
    ap.add_argument("--threads", type=int, default=2)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    det = LandmarkDetector(a.model)
    ids = set(det.info.calibration["images"])
    samples = [s for s in load_dataset(a.dataset, "train") if s.id in ids]
    rows = []
    for k, s in enumerate(samples):
        base = read_radiograph(s.image_path).pixels
        for j, (name, fn) in enumerate(shifts().items()):
            pixels, truth, spacing, known = fn(base, s.landmarks_px, np.random.default_rng(1000 + k))
            rad = Radiograph(np.ascontiguousarray(pixels, dtype=np.float32), (spacing, spacing),
                             "user" if known else "assumed", f"{s.id}:{name}")
            f = features(det, rad, truth)
            f["image"] = np.full(len(truth), k)
            f["shift"] = np.full(len(truth), j)
            rows.append(f)
        print(f"  {s.id} done", file=sys.stderr, flush=True)
    cat = {key: np.concatenate([r[key] for r in rows]) for key in rows[0]}
    np.savez(a.out, shift_names=np.array(list(shifts())), **cat)
    ok = cat["truth_in"] & ~cat["miss"]
    err = cat["err"][ok]
    print(f"{ok.sum()} points, {(err > 4).sum()} errors > 4 mm, MRE {err.mean():.2f} mm")
    for key in ("ere", "ere0", *(f"far{r}" for r in RADII_MM), "tta"):
        s = cat[key][ok]
        fp, t = tradeoff(s, err)
        print(f"{key:6s} AUC>4mm {auc(s, err > 4):.3f}  <2mm flagged at 80 % of >4mm: {fp:.1f} % (t={t:.3g})")


if __name__ == "__main__":
    main()
