"""Are the measurement intervals honest?  Coverage and class accuracy on ISBI Test1 / Test2.

For every test image: detect with --model, draw landmark configurations from the
calibrated heatmaps (measurement_uncertainty.py), and compare with the "true"
measurements computed from the doctors' mean landmarks:
- coverage: share of images whose true value lies inside the 90 % interval (p05-p95);
  honest intervals give about 90 %;
- class accuracy: most probable class vs the class of the true value, and the class of
  the value at the detected points vs the same;
- doctors agree: share of images where the senior and junior doctors' landmarks give
  the same class (a ceiling for any method).

    python benchmarks/measurement_coverage.py --model runs/m.safetensors [--data DIR] [--out FILE.json]

Skips with a message (exit 0) when the ISBI data are absent.
"""

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from CephLandmarksLib.annotations.datasets import ISBI_SPACING_MM, load_dataset  # noqa: E402
from CephLandmarksLib.cephalometry.measurements import ISBI_MEASUREMENTS, MEASUREMENTS  # noqa: E402

DEFAULT_DATA = ROOT.parent / "shared" / "data" / "isbi2015"

# Published classification accuracies of the challenge (Wang et al. 2016) per measurement,
# in %, to print beside ours.  Left empty: the figures could not be found in the sources
# available while writing this; fill in {split: {key: percent}} with a citation when checked.
PUBLISHED = {}


def truth_values(points_px, spacing_mm) -> dict:
    p = np.asarray(points_px) * np.asarray(spacing_mm)
    return {m.key: float(m(p)) for m in MEASUREMENTS}


def doctors_agreement(root, split) -> dict:
    """Per ISBI measurement: share of images where the two doctors' landmarks give one class."""
    senior = load_dataset(root, split, "senior")
    junior = load_dataset(root, split, "junior")
    ps = np.stack([s.landmarks_px for s in senior]) * ISBI_SPACING_MM
    pj = np.stack([s.landmarks_px for s in junior]) * ISBI_SPACING_MM
    return {m.key: float(np.mean(m.class_index(m(ps)) == m.class_index(m(pj)))) for m in ISBI_MEASUREMENTS}


def evaluate_split(detector, root, split, n, seed, limit=None, log=print) -> dict:
    from CephLandmarksLib.cephalometry.measurement_uncertainty import measure_detection
    from CephLandmarksLib.imaging.images import read_radiograph

    samples = load_dataset(root, split)[:limit]
    rows = {m.key: {"covered": [], "width": [], "abs_err_median": [], "abs_err_value": [], "truth": [],
                    "class_ok": [], "class_at_value_ok": [], "true_class_probability": []} for m in MEASUREMENTS}
    t0 = time.time()
    for i, s in enumerate(samples):
        rad = read_radiograph(s.image_path, s.spacing_mm)
        det = detector.detect(rad, contours=False)
        truth = truth_values(s.landmarks_px, rad.spacing_mm)
        for r in measure_detection(det, n, seed):
            t, row = truth[r["key"]], rows[r["key"]]
            row["covered"].append(r["p05"] <= t <= r["p95"])
            row["width"].append(r["p95"] - r["p05"])
            row["abs_err_median"].append(abs(r["median"] - t))
            row["abs_err_value"].append(abs(r["value"] - t))
            row["truth"].append(t)
            if "classes" in r:
                m = next(m for m in MEASUREMENTS if m.key == r["key"])
                true_code = m.classes[int(m.class_index([t])[0])][0]
                row["class_ok"].append(r["class"] == true_code)
                row["class_at_value_ok"].append(r["class_at_value"] == true_code)
                row["true_class_probability"].append(
                    next(c["probability"] for c in r["classes"] if c["code"] == true_code))
        if (i + 1) % 10 == 0 or i + 1 == len(samples):
            log(f"{split}: {i + 1}/{len(samples)} images, {time.time() - t0:.0f} s")
    agree = doctors_agreement(root, split)
    out = {}
    for key, row in rows.items():
        res = {"n": len(row["covered"]), "coverage_90": float(np.mean(row["covered"])),
               "mean_width": float(np.mean(row["width"])), "mae_median": float(np.mean(row["abs_err_median"])),
               "mae_value": float(np.mean(row["abs_err_value"]))}
        if row["class_ok"]:
            res.update({"class_accuracy": float(np.mean(row["class_ok"])),
                        "class_accuracy_at_value": float(np.mean(row["class_at_value_ok"])),
                        "mean_true_class_probability": float(np.mean(row["true_class_probability"])),
                        "doctors_agree": agree[key],
                        "published_accuracy": PUBLISHED.get(split, {}).get(key)})
        out[key] = res
    return out


def markdown(split, res) -> str:
    units = {m.key: m.unit for m in MEASUREMENTS}
    lines = [f"### {split} ({next(iter(res.values()))['n']} images)", "",
             "| measurement | unit | 90 % coverage | mean width | MAE (median) | class acc. (most probable) "
             "| class acc. (detected value) | mean p(true class) | doctors agree | published |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    pct = lambda v: "" if v is None else f"{100 * v:.1f} %"  # noqa: E731
    for key, r in res.items():
        lines.append(f"| {key} | {units[key]} | {pct(r['coverage_90'])} | {r['mean_width']:.2f} | "
                     f"{r['mae_median']:.2f} | {pct(r.get('class_accuracy'))} | "
                     f"{pct(r.get('class_accuracy_at_value'))} | "
                     f"{pct(r.get('mean_true_class_probability'))} | {pct(r.get('doctors_agree'))} | "
                     f"{'' if r.get('published_accuracy') is None else r['published_accuracy']} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", required=True)
    ap.add_argument("--data", default=str(DEFAULT_DATA))
    ap.add_argument("--splits", nargs="+", default=["test1", "test2"])
    ap.add_argument("--samples", type=int, default=2000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--limit", type=int, help="first N images of each split (quick runs)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--out", default="measurement_coverage.json")
    a = ap.parse_args(argv)
    if not (Path(a.data) / "RawImage").is_dir():
        print(f"ISBI 2015 data not found at {a.data}; skipping")
        return 0
    from CephLandmarksLib.detection.predictor import LandmarkDetector

    detector = LandmarkDetector(a.model, a.device)
    results = {"model": str(a.model), "samples": a.samples, "seed": a.seed, "ground_truth": "mean of the two doctors",
               "splits": {}}
    for split in a.splits:
        res = evaluate_split(detector, a.data, split, a.samples, a.seed, a.limit,
                             log=lambda m: print(m, file=sys.stderr, flush=True))
        results["splits"][split] = res
        print(markdown(split, res) + "\n", flush=True)
    Path(a.out).write_text(json.dumps(results, indent=2))
    print(f"wrote {a.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
