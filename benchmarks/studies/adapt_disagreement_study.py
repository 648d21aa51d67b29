"""Would a second opinion improve the adapted flags?  The distance between the fine-tuned decoder's
point and the base network's point moved by the clinic's offsets, as a flag score beside the
adapted one (P(error > 4 mm) weighed with the image's other points).

Both readings exist after `adapt` (it fits offsets and fine-tunes while choosing), so shipping the
second would cost one decoder pass per image and the base decoder in the adapted file.  The two
readings should agree where the image is easy and part where it misleads one of them.

For each split of 20 clinic images (the adapt benchmark's splits; Test1 as the clinic, where flag
rules are chosen), the rest of the set is read by both, and each point gets: its error under the
fine-tune and under the offsets, each one's P(error > 4 mm), and the distance between the two
points.  Printed per reading: ROC AUC for errors over 4 mm, and the share of points within 2 mm
flagged at the threshold catching 85 % of those errors, for P, the weighed P, the distance, and the
weighed P's log-odds + b x log(distance + 0.3 mm).  Per-split arrays go to --dumps (git-ignored,
derived from ISBI annotations), and --from-dumps prints the table from them again.

    .venv/bin/python benchmarks/studies/adapt_disagreement_study.py [--clinic test1] [--splits 5] [--from-dumps]
"""

import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]  # benchmarks/studies/STUDY.py -> the repository root
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))  # adapt_benchmark stays in benchmarks/
sys.path.insert(0, str(Path(__file__).resolve().parent))  # the other studies

CLINIC_IMAGES = 20
DISTANCE_FLOOR_MM = 0.3  # keeps log(distance) finite where the two readings agree to the pixel
WEIGHTS = (0.5, 1.0, 1.5, 2.0, 3.0)  # b in log-odds + b x log(distance + floor)


def collect(detector, cases, split: int) -> dict:
    """Per scored point of one split: errors, P(error > 4 mm) of each reading, and their distance."""
    from CephLandmarksLib.clinic.adaptation import FINE_TUNE, adapt, fit, read_with, tuned_network
    from CephLandmarksLib.training.metrics import radial_errors_mm

    order = np.random.default_rng(1000 * CLINIC_IMAGES + split).permutation(len(cases))
    clinic, rest = [cases[i] for i in order[:CLINIC_IMAGES]], [cases[i] for i in order[CLINIC_IMAGES:]]
    ad = adapt(detector, clinic)
    offsets = fit(detector, clinic, "offsets")
    tuned = fit(detector, ad.scored[FINE_TUNE], "none", ad.outcomes[FINE_TUNE].p_large)
    net = ad.network if ad.method == FINE_TUNE else tuned_network(detector, clinic)
    rows = {k: [] for k in ("err_ft", "err_off", "p_ft", "p_off", "distance_mm")}
    for c in rest:
        ft = detector.decide(read_with(net, c).obs, tuned, contours=False, extents=False)
        off = detector.decide(c.obs, offsets, contours=False, extents=False)
        mm = np.asarray(ft.spacing_mm, dtype=float)
        rows["err_ft"].append(radial_errors_mm(ft.points_px, c.true_px, ft.spacing_mm))
        rows["err_off"].append(radial_errors_mm(off.points_px, c.true_px, off.spacing_mm))
        rows["p_ft"].append([lm.p_large_error for lm in ft.landmarks])
        rows["p_off"].append([lm.p_large_error for lm in off.landmarks])
        rows["distance_mm"].append(np.hypot(*((ft.points_px - off.points_px) * mm).T))
    return {"method": ad.method, **{k: np.asarray(v, dtype=float) for k, v in rows.items()}}


def table(dumps) -> list:
    """Markdown rows: per reading and score, AUC for errors > 4 mm and good points flagged at 85 % caught."""
    from adapt_flag_study import ranking

    from CephLandmarksLib.uncertainty.flag_score import IMAGE_WEIGHT, image_adjusted_p_large, log_odds
    from CephLandmarksLib.uncertainty.levels import LARGE_ERROR_MM

    lines = ["| reading | score | AUC, errors > 4 mm | points ≤ 2 mm flagged at 85 % caught |", "|---|---|---|---|"]
    log_d = np.log(np.concatenate([d["distance_mm"] for d in dumps]) + DISTANCE_FLOOR_MM)
    for reading in ("ft", "off"):
        err = np.concatenate([d[f"err_{reading}"] for d in dumps])
        p = np.concatenate([d[f"p_{reading}"] for d in dumps])
        weighed = log_odds(np.concatenate([image_adjusted_p_large(d[f"p_{reading}"], IMAGE_WEIGHT) for d in dumps]))
        scores = {"P(error > 4 mm)": log_odds(p), "P weighed with the image (the adapted score)": weighed,
                  "distance between the readings": log_d,
                  **{f"weighed P + {b:g} × log distance": weighed + b * log_d for b in WEIGHTS}}
        n_large = int((err > LARGE_ERROR_MM).sum())
        for name, s in scores.items():
            auc, good_flagged, _ = ranking(s, err)
            lines.append(f"| {reading} (MRE {np.nanmean(err):.3f} mm, {n_large} errors > 4 mm) | {name} | "
                         f"{auc:.3f} | {good_flagged:.1f} % |")
    return lines


def main(argv=None):
    from adapt_benchmark import split_study

    a, dumps = split_study(argv, __doc__.splitlines()[0], "runs/adapt_disagreement", collect,
                           describe=lambda d: f"{d['method']}, MRE fine-tune {np.nanmean(d['err_ft']):.3f}, "
                                              f"offsets {np.nanmean(d['err_off']):.3f}")
    print(f"{a.clinic} as the clinic, {len(dumps)} splits of {CLINIC_IMAGES} images, chosen: "
          f"{[str(d['method']) for d in dumps]}")
    print("\n".join(table(dumps)))


if __name__ == "__main__":
    main()
