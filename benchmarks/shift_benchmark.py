"""Shift benchmark: accuracy and honest flags on ISBI Test1/Test2 images shifted as other machines would.

    python benchmarks/shift_benchmark.py --model M [--refine FILE|none] [--dataset DIR] [--limit N]
                                         [--out docs/robustness] [--device cuda]

--refine FILE runs the second stage (a refiner file, e.g. Resources/Models/isbi2015-384x480.refiner.safetensors)
after the model, as `detect` does by default; the default, none, is the first stage alone, so that the
table in docs/robustness.md (first stage, v1.1) stays reproducible.  docs/evaluation/second_stage_checks.md
compares the two stages on a subset.

Every shift is made in memory from the ISBI images (nothing derived from them is written):
  clean             as stored, spacing known (0.1 mm)          -> physical framing
  clean, spacing ?  as stored, spacing unknown                 -> fit-width framing
  zoom x0.8 / x1.25 anatomy scaled about the image centre, same pixel count (the skull fills
                    less / more of the image; x1.25 loses the margins), spacing 0.1/s mm,
                    known (physical framing) or unknown (fit-width framing)
  crop back 1/4     the left quarter (back of the skull) cut away
  crop bottom 1/5   the bottom fifth (chin) cut away
  gamma 0.6 / 1.6   exposure: I -> 255 (I / 255)^gamma
  noise             Gaussian, sigma 10 grey levels (of 255)
  mirrored          flipped left-right: the profile faces left
Landmarks whose ground truth falls outside the shifted image are "cut off": they should be
reported missing.  MRE, SDR and the flag shares are over the points whose truth is inside
the image and that were not reported missing; those reported missing although inside are
counted apart ("missing, truth inside").

--shift NAME (repeatable) runs only those shifts and clean, e.g. to measure a few rows on more images.

Prints a markdown table; writes shift_benchmark.json and shift_mre.png into --out.  Test1 and
Test2 images are processed alternately and the figures so far are rewritten after each image
to shift_benchmark.partial.json (removed at the end), so a long run stopped early still says
something.
"""

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from CephLandmarksLib.annotations.datasets import load_dataset  # noqa: E402
from CephLandmarksLib.detection.predictor import LEFT_FACING, LandmarkDetector  # noqa: E402
from CephLandmarksLib.imaging.images import Radiograph, read_radiograph  # noqa: E402
from CephLandmarksLib.store.modelfile import atomic_write  # noqa: E402

ISBI = Path(__file__).resolve().parents[2] / "shared" / "data" / "isbi2015"
SPACING_MM = 0.1
NOISE_SIGMA = 10.0
GEOMETRIC = ("zoom x0.8", "zoom x1.25", "crop back 1/4", "crop bottom 1/5", "mirrored")


def zoom(pixels, xy, s):
    """Scale the content by s about the image centre, keeping the image size; background fills the rest."""
    from scipy.ndimage import affine_transform

    h, w = pixels.shape
    c = np.array([(h - 1) / 2, (w - 1) / 2])  # (row, col)
    out = affine_transform(pixels, np.eye(2) / s, offset=c - c / s, order=1, mode="constant",
                           cval=float(np.percentile(pixels, 1)))
    cx = np.array([(w - 1) / 2, (h - 1) / 2])
    return out.astype(np.float32), cx + s * (xy - cx), SPACING_MM / s


def shifts():
    """name -> fn(pixels, xy, rng) -> (pixels, xy, spacing_mm, spacing known?)"""
    return {
        "clean": lambda p, xy, r: (p, xy, SPACING_MM, True),
        "clean, spacing unknown": lambda p, xy, r: (p, xy, SPACING_MM, False),
        "zoom x0.8": lambda p, xy, r: (*zoom(p, xy, 0.8), True),
        "zoom x0.8, spacing unknown": lambda p, xy, r: (*zoom(p, xy, 0.8), False),
        "zoom x1.25": lambda p, xy, r: (*zoom(p, xy, 1.25), True),
        "zoom x1.25, spacing unknown": lambda p, xy, r: (*zoom(p, xy, 1.25), False),
        "crop back 1/4": lambda p, xy, r: (p[:, p.shape[1] // 4:], xy - [p.shape[1] // 4, 0], SPACING_MM, True),
        "crop bottom 1/5": lambda p, xy, r: (p[: p.shape[0] - p.shape[0] // 5], xy, SPACING_MM, True),
        "gamma 0.6": lambda p, xy, r: (255 * (np.clip(p, 0, 255) / 255) ** 0.6, xy, SPACING_MM, True),
        "gamma 1.6": lambda p, xy, r: (255 * (np.clip(p, 0, 255) / 255) ** 1.6, xy, SPACING_MM, True),
        "noise": lambda p, xy, r: (p + r.normal(0, NOISE_SIGMA, p.shape).astype(np.float32), xy, SPACING_MM, True),
        "mirrored": lambda p, xy, r: (np.ascontiguousarray(p[:, ::-1]), np.c_[p.shape[1] - 1 - xy[:, 0], xy[:, 1]],
                                      SPACING_MM, True),
    }


def inside(xy, size):
    w, h = size
    return (xy[:, 0] >= -0.5) & (xy[:, 0] <= w - 0.5) & (xy[:, 1] >= -0.5) & (xy[:, 1] <= h - 0.5)


def share(flags):
    return float(100 * np.mean(flags)) if np.size(flags) else float("nan")


def summarise(rows):
    """rows: per image dicts of arrays -> the shift's figures."""
    cat = {k: np.concatenate([r[k] for r in rows]) for k in ("err", "flag", "miss", "truth_in", "out_pred")}
    ok = cat["truth_in"] & ~cat["miss"]
    e, f = cat["err"][ok], cat["flag"][ok]
    cut = ~cat["truth_in"]
    flagged_any = cat["flag"] | cat["miss"]
    return {
        "n_points": int(len(cat["err"])),
        "mre_mm": float(e.mean()) if e.size else float("nan"),
        "sdr_2mm": share(e <= 2.0),
        "flagged_over_4mm": share(f[e > 4.0]),
        "flagged_under_2mm": share(f[e <= 2.0]),
        "n_over_4mm": int((e > 4.0).sum()),
        "missing_but_inside": int((cat["truth_in"] & cat["miss"]).sum()),
        "cut_off": int(cut.sum()),
        "cut_off_reported_missing": int((cut & cat["miss"]).sum()),
        "cut_off_unflagged": int((cut & ~flagged_any).sum()),
        "unflagged_outside_image": int((cat["out_pred"] & ~flagged_any).sum()),
        "left_facing_share": share(np.array([r["left"] for r in rows])),
        "framing": sorted({r["framing"] for r in rows}),
    }


def run(det, samples, on_image=None, names=None):
    """{shift: [per image dict]} for the shifts `names` (None: all); on_image(table, n_done) is called after
    each image."""
    chosen = {name: fn for name, fn in shifts().items() if names is None or name in names}
    table = {name: [] for name in chosen}
    for k, s in enumerate(samples):
        base = read_radiograph(s.image_path).pixels
        for name, fn in chosen.items():
            rng = np.random.default_rng(1000 + k)
            pixels, truth, spacing, known = fn(base, s.landmarks_px, rng)
            rad = Radiograph(np.ascontiguousarray(pixels, dtype=np.float32), (spacing, spacing),
                             "user" if known else "assumed", f"{s.id}:{name}")
            d = det.detect(rad, contours=False)
            pred = d.points_px
            miss = np.array([lm.missing for lm in d.landmarks])
            err = np.linalg.norm((np.nan_to_num(pred) - truth) * spacing, axis=1)
            table[name].append(dict(
                err=err, flag=np.array([lm.flagged for lm in d.landmarks]), miss=miss,
                truth_in=inside(truth, rad.size), out_pred=~miss & ~inside(np.nan_to_num(pred), rad.size),
                left=d.orientation == LEFT_FACING, framing=d.framing,
            ))
        print(f"  {s.id} done", file=sys.stderr, flush=True)
        if on_image is not None:
            on_image(table, k + 1)
    return table


def markdown(results, clean_mre):
    lines = ["| shift | framing | MRE mm | vs clean | SDR 2 mm % | >4 mm flagged % (n) | <2 mm flagged % "
             "| missing, truth inside | cut off: missing / unflagged | unflagged outside | left-facing % |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for name, r in results.items():
        lines.append(
            f"| {name} | {'/'.join(r['framing'])} | {r['mre_mm']:.2f} | {100 * (r['mre_mm'] / clean_mre - 1):+.0f} % "
            f"| {r['sdr_2mm']:.1f} | {r['flagged_over_4mm']:.0f} ({r['n_over_4mm']}) "
            f"| {r['flagged_under_2mm']:.1f} | {r['missing_but_inside']} "
            f"| {r['cut_off_reported_missing']}/{r['cut_off']} missing, "
            f"{r['cut_off_unflagged']} unflagged | {r['unflagged_outside_image']} | {r['left_facing_share']:.0f} |")
    return "\n".join(lines)


def plot(results, path):
    from matplotlib.figure import Figure

    names = list(results)
    fig = Figure(figsize=(10, 4.2))
    ax = fig.add_subplot(1, 1, 1)
    mre = [results[n]["mre_mm"] for n in names]
    colours = ["#4477aa" if "unknown" not in n else "#ccbb44" for n in names]
    ax.bar(range(len(names)), mre, color=colours, edgecolor="black")
    ax.axhline(results["clean"]["mre_mm"] * 1.15, color="red", ls="--", lw=1, label="clean MRE + 15 %")
    for i, n in enumerate(names):
        ax.annotate(f"{results[n]['flagged_over_4mm']:.0f} %", (i, mre[i]), xytext=(0, 3), textcoords="offset points",
                    ha="center", fontsize=7)
    ax.set_xticks(range(len(names)))
    ax.set_xticklabels(names, rotation=35, ha="right", fontsize=8)
    ax.set_ylabel("MRE (mm)")
    ax.set_title("MRE per shift (yellow: spacing unknown); labels: share of errors > 4 mm flagged")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, format="png")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True)
    ap.add_argument("--dataset", default=str(ISBI))
    ap.add_argument("--limit", type=int, default=0, help="images per split (0: all)")
    ap.add_argument("--out", default=str(Path(__file__).resolve().parents[1] / "docs" / "robustness"))
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--refine", default="none",
                    help="a refiner file to run as the second stage; none (default): the first stage alone")
    ap.add_argument("--shift", action="append", default=[],
                    help="run only this shift (a name as in the table; repeat for several; clean is always run); "
                         "default: all")
    a = ap.parse_args()
    names = None
    if a.shift:
        names = {"clean", *a.shift}
        unknown = names - set(shifts())
        if unknown:
            ap.error(f"unknown shift {sorted(unknown)[0]!r}; choose from {', '.join(shifts())}")
    torch.set_num_threads(a.threads)
    det = LandmarkDetector(a.model, a.device, refiner=None if a.refine == "none" else a.refine)
    t0 = time.time()
    per_split = []
    for split in ("test1", "test2"):
        ss = load_dataset(a.dataset, split)
        per_split.append(ss[:: max(1, len(ss) // a.limit)][: a.limit] if a.limit else ss)
    # Test1 and Test2 interleaved, so that the partial results written along the way are balanced.
    samples = [x for pair in zip(*per_split, strict=False) for x in pair]
    samples += per_split[0][len(per_split[1]):] + per_split[1][len(per_split[0]):]
    out = Path(a.out)

    def partial(table, n_done):
        done = {name: summarise(rows) for name, rows in table.items()}
        atomic_write(out / "shift_benchmark.partial.json", lambda p: Path(p).write_text(json.dumps(
            {"images_done": [x.id for x in samples[:n_done]], "results": done}, indent=2)))

    table = run(det, samples, partial, names)
    results = {name: summarise(rows) for name, rows in table.items()}
    clean = results["clean"]["mre_mm"]
    stage = "first stage alone" if det.refiner is None else f"refiner {det.refiner.sha256[:12]}"
    print(f"model {det.info.name} ({det.model.sha256[:12]}), {stage}, {len(samples)} images (Test1 + Test2), "
          f"ERE threshold {det.settings.ere_threshold_mm:.2f} mm, model scale {det.mm_per_px:.4f} mm/px, "
          f"{time.time() - t0:.0f} s\n")
    print(markdown(results, clean))
    meta = {"model": det.info.name, "sha256": det.model.sha256,
            "refiner_sha256": None if det.refiner is None else det.refiner.sha256, "images": [s.id for s in samples],
            "ere_threshold_mm": det.settings.ere_threshold_mm, "model_mm_per_px": det.mm_per_px,
            "geometric_shifts": list(GEOMETRIC), "results": results}
    atomic_write(out / "shift_benchmark.json", lambda p: Path(p).write_text(json.dumps(meta, indent=2)))
    atomic_write(out / "shift_mre.png", lambda p: plot(results, p))
    (out / "shift_benchmark.partial.json").unlink(missing_ok=True)


if __name__ == "__main__":
    main()
