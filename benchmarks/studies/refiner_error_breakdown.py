"""Where the two-stage error goes, per landmark, on ISBI Test1 and Test2 (issue 29).

For every test image the network and the refiner run once (LandmarkDetector.observe); the same
observation is decided with the second stage (the default) and without it (the first stage's own
settings).  Per landmark:
- MRE of the first stage and of the two stages (mean of the doctors' points);
- coarse misses: the share of points whose truth lies outside the crop the first stage centred
  (the fine map cannot reach it), and their part of the two-stage MRE (their errors / all points);
- fine-stage error: the two-stage MRE over the points whose truth lies inside the crop;
- annotation spread: the mean distance between the senior and the junior doctor's points, a floor
  that no detector measured against their mean can be expected to beat by much.

    python benchmarks/studies/refiner_error_breakdown.py [--dataset ../shared/data/isbi2015] [--limit N]
        [--out docs/evaluation/refiner_breakdown.json]

Prints one markdown table per split; writes the figures as JSON.  Test1 and Test2 choose nothing:
nothing here feeds back into the model or its settings.
"""

import argparse
import json
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from CephLandmarksLib.annotations.datasets import load_dataset  # noqa: E402
from CephLandmarksLib.detection.predictor import LandmarkDetector, Settings  # noqa: E402
from CephLandmarksLib.imaging.images import read_radiograph  # noqa: E402
from CephLandmarksLib.store.registry import default_model_path, refiner_beside  # noqa: E402
from CephLandmarksLib.training.metrics import radial_errors_mm  # noqa: E402


def inside_crop(crop, xy_px) -> bool:
    u, v = crop.image_to_crop(np.asarray(xy_px, dtype=np.float64))
    w, h = crop.size
    return bool(0 <= u <= w - 1 and 0 <= v <= h - 1)


def split_rows(det, split, dataset, limit):
    """(L,) arrays per image: first-stage error, two-stage error, truth inside its crop, doctors' spread."""
    mean = load_dataset(dataset, split, "mean")[: limit or None]
    senior = {s.id: s for s in load_dataset(dataset, split, "senior")}
    junior = {s.id: s for s in load_dataset(dataset, split, "junior")}
    first = Settings.of(det.info)
    rows = []
    for k, s in enumerate(mean):
        print(f"{split} {k + 1}/{len(mean)}", file=sys.stderr, end="\r")
        obs = det.observe(read_radiograph(s.image_path, s.spacing_mm))
        two = det.decide(obs, contours=False, extents=False)
        one = det.decide(replace(obs, fine=None), first, contours=False, extents=False)
        truth = np.asarray(s.landmarks_px, dtype=np.float64)
        inside = [inside_crop(c, t) for c, t in zip(two.combined.crops, truth, strict=True)]
        spread = radial_errors_mm(senior[s.id].landmarks_px, junior[s.id].landmarks_px, two.spacing_mm)
        rows.append((radial_errors_mm(one.points_px, truth, one.spacing_mm),
                     radial_errors_mm(two.points_px, truth, two.spacing_mm), np.array(inside), spread,
                     np.array([bool(lm.refined) for lm in two.landmarks])))
    return [np.array(x, dtype=float) for x in zip(*rows, strict=True)]


def breakdown(e1, e2, inside, spread, refined, names) -> dict:
    n = e2.shape[0]
    outside = inside < 0.5

    def figures(j):
        sl = slice(None) if j is None else j
        a1, a2, out, sp, ref = (x[:, sl] for x in (e1, e2, outside, spread, refined))
        return {
            "mre_first_mm": float(np.nanmean(a1)), "mre_two_mm": float(np.nanmean(a2)),
            "truth_outside_crop_percent": float(100 * out.mean()),
            "outside_part_of_mre_mm": float(np.nansum(np.where(out, a2, 0.0)) / a2.size),
            "mre_inside_crop_mm": float(np.nanmean(np.where(out, np.nan, a2))) if (~out).any() else float("nan"),
            "refined_percent": float(100 * ref.mean()),
            "doctors_spread_mm": float(np.nanmean(sp)),
        }

    return {"n_images": n, "pooled": figures(None),
            "per_landmark": [dict(landmark=name, **figures(j)) for j, name in enumerate(names)]}


def table(result, split) -> str:
    head = ("| landmark | first stage | two stages | truth outside crop | its part of the MRE | "
            "two stages, truth inside | doctors' spread |")
    lines = [f"### {split} ({result['n_images']} images; mm)", "", head, "|---|---|---|---|---|---|---|"]
    for r in result["per_landmark"] + [dict(result["pooled"], landmark="**all**")]:
        lines.append(f"| {r['landmark']} | {r['mre_first_mm']:.2f} | {r['mre_two_mm']:.2f} | "
                     f"{r['truth_outside_crop_percent']:.1f} % | {r['outside_part_of_mre_mm']:.2f} | "
                     f"{r['mre_inside_crop_mm']:.2f} | {r['doctors_spread_mm']:.2f} |")
    return "\n".join(lines)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--dataset", default=str(ROOT.parent / "shared/data/isbi2015"))
    ap.add_argument("--model", default=None)
    ap.add_argument("--refiner", default=None, help="default: the one beside the model")
    ap.add_argument("--splits", nargs="+", default=["test1", "test2"])
    ap.add_argument("--limit", type=int, default=0)
    ap.add_argument("--out", default=str(ROOT / "docs/evaluation/refiner_breakdown.json"))
    a = ap.parse_args()
    model = a.model or default_model_path()
    det = LandmarkDetector(model, refiner=a.refiner or refiner_beside(model))
    names = list(det.info.landmark_abbreviations)
    out = {"model_sha256": det.model.sha256, "refiner_sha256": det.refiner.sha256}
    for split in a.splits:
        out[split] = breakdown(*split_rows(det, split, a.dataset, a.limit), names)
        print(table(out[split], split) + "\n")
    Path(a.out).write_text(json.dumps(out, indent=1) + "\n")


if __name__ == "__main__":
    main()
