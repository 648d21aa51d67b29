"""Which score should an adapted model flag on?  ERE, P(error > 4 mm) as its map reads it or adjusted
for the image's other points (the adapted rule), or the "90 %" region's reach or area, each ranked
against the errors over 4 mm of the images NOT adapted on.

For each clinic (default: Test1, the control, where the flag rule was chosen; Test2 is the
benchmark's clinic and only reports) and each random split of 20 clinic images, the shipped
model is adapted (default methods none,offsets, as when the rule was chosen) and every point of
the rest of the set is scored.  Prints, per score: the ROC AUC for errors over 4 mm, the share of
points within 2 mm flagged at the threshold catching 85 % of those errors, and the threshold.  Then
the adapted rule's share (adaptation.FLAG_SHARE): for each share of the clinic's cross-validated
points, the errors over 4 mm caught and the good points flagged on the rest, and the smallest share
catching 85 % (FLAG_SHARE was chosen so with Test1 as the clinic).
Uses adapt_benchmark's cache of network outputs (git-ignored; never commit it: ISBI licence).

    .venv/bin/python benchmarks/studies/adapt_flag_study.py [--clinics test1,test2] [--splits 5]
"""

import argparse
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]  # benchmarks/studies/STUDY.py -> the repository root
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))  # adapt_benchmark stays in benchmarks/
sys.path.insert(0, str(Path(__file__).resolve().parent))  # the other studies

import adapt_benchmark as ab  # noqa: E402
from adapt_flag_replay import replay  # noqa: E402

from CephLandmarksLib.clinic.adaptation import adapt  # noqa: E402
from CephLandmarksLib.detection.predictor import LandmarkDetector  # noqa: E402
from CephLandmarksLib.memory import limit_heap_fragmentation  # noqa: E402
from CephLandmarksLib.store.registry import SHIPPED_MODELS_DIR, default_model_path  # noqa: E402
from CephLandmarksLib.training.metrics import radial_errors_mm, roc_curve  # noqa: E402
from CephLandmarksLib.training.scoring import GOOD_ERROR_MM  # noqa: E402
from CephLandmarksLib.uncertainty.flag_score import IMAGE_WEIGHT, image_adjusted_p_large  # noqa: E402
from CephLandmarksLib.uncertainty.levels import LARGE_ERROR_MM  # noqa: E402

CLINIC_IMAGES = 20
CATCH = 0.85  # the target share of errors over 4 mm flagged
SHARES = np.arange(0.20, 0.4001, 0.01)  # the shares of the clinic's cross-validated points share_table tries


def point_scores(detector, cases, settings) -> dict:
    """Per scored point: error (mm) and each candidate score."""
    rows = {"error": [], "ere": [], "p_large": [], "p_adjusted": [], "reach90": [], "area90": [], "other_flag": []}
    for c in cases:
        d = detector.decide(c.obs, settings, contours=False, extents=True)
        rows["other_flag"] += [bool(set(lm.flag_reasons) - {"uncertain"}) for lm in d.landmarks]
        rows["error"] += list(radial_errors_mm(d.points_px, c.true_px, d.spacing_mm))
        rows["p_adjusted"] += list(image_adjusted_p_large([lm.p_large_error for lm in d.landmarks]))
        for lm in d.landmarks:
            rows["ere"].append(lm.ere_mm)
            rows["p_large"].append(lm.p_large_error)
            rows["reach90"].append(lm.region_90_max_distance_mm)
            rows["area90"].append(lm.region_90_area_mm2)
    return {k: np.asarray(v, dtype=float) for k, v in rows.items()}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dataset", default=str(ROOT.parent / "shared/data/isbi2015"))
    ap.add_argument("--cache", default=str(ROOT / "runs/adapt_cache"))
    ap.add_argument("--clinics", default="test1,test2")
    ap.add_argument("--splits", type=int, default=5)
    ap.add_argument("--methods", default="none,offsets")
    a = ap.parse_args(argv)
    limit_heap_fragmentation()  # thousands of decides: a flag-study loop without it was OOM-killed at 24 GB
    detector = LandmarkDetector(default_model_path(SHIPPED_MODELS_DIR))
    sets = ab.load_all(detector, a.dataset, Path(a.cache), encode=())
    shares = []
    print("| clinic | score | AUC, errors > 4 mm | points ≤ 2 mm flagged at 85 % caught | threshold |\n"
          "|---|---|---|---|---|")
    for clinic in a.clinics.split(","):
        cases, parts, cv_p = sets[clinic], [], []
        for split in range(a.splits):  # the adapt benchmark's splits
            order = np.random.default_rng(1000 * CLINIC_IMAGES + split).permutation(len(cases))
            ad = adapt(detector, [cases[i] for i in order[:CLINIC_IMAGES]], a.methods.split(","))
            parts.append(point_scores(detector, [cases[i] for i in order[CLINIC_IMAGES:]], ad.settings))
            cv_p.append(ad.outcomes[ad.method].p_large)
        shares.append((clinic, share_table(parts, cv_p)))
        pooled = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
        pooled.pop("other_flag")
        err = pooled.pop("error")
        for name, score in pooled.items():
            auc, good_flagged, t = ranking(score, err)
            print(f"| {clinic} | {name} | {auc:.3f} | {good_flagged:.1f} % | {t:.3g} |")
    for clinic, table in shares:
        print(f"\n{clinic}, share of the clinic's cross-validated points flagged -> errors > 4 mm caught, "
              f"points <= 2 mm flagged (the other flag reasons kept):")
        for q, caught, good in table:
            print(f"  {q:.2f}: {caught:.1f} %, {good:.1f} %")
        first = next((q for q, caught, _ in table if caught >= 100 * CATCH), None)
        print(f"  smallest share catching {CATCH:.0%}: {first}")


def ranking(score, errors_mm) -> tuple:
    """(ROC AUC of `score` for errors over 4 mm, % of points within 2 mm flagged at the threshold catching
    CATCH of those errors, that threshold), over the points where both are finite."""
    ok = np.isfinite(score) & np.isfinite(errors_mm)
    s, e = np.asarray(score)[ok], np.asarray(errors_mm)[ok]
    large, good = e > LARGE_ERROR_MM, e <= GOOD_ERROR_MM
    t = float(np.quantile(s[large], 1 - CATCH))
    return roc_curve(s, large)[3], 100 * float((s[good] >= t).mean()), t


def share_table(parts, cv_p, shares=SHARES) -> list:
    """[(share, % of errors > 4 mm caught, % of points <= 2 mm flagged)] pooled over the splits, each
    split's threshold flagging that share of its clinic's cross-validated points (the adapted rule:
    P(error > 4 mm) weighed with the image's other points; adapt_flag_replay.replay)."""
    table = []
    for q in shares:
        caught, n_large, good, n_good = np.sum([replay(_split(part, p), q, IMAGE_WEIGHT)
                                                for part, p in zip(parts, cv_p, strict=True)], axis=0)
        table.append((round(float(q), 2), 100 * caught / n_large, 100 * good / n_good))
    return table


def _split(part, cv_p) -> dict:
    """A split's point_scores and its clinic's CV P in the form adapt_flag_replay.replay reads."""
    rows = (-1, cv_p.shape[1])
    return {"cv_p_large": cv_p, "p_large": part["p_large"].reshape(rows), "errors_mm": part["error"].reshape(rows),
            "other_flag": part["other_flag"].astype(bool).reshape(rows)}


if __name__ == "__main__":
    main()
