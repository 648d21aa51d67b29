"""Replay adapted flag rules on the per-point results adapt_benchmark.py saved, without adapting again.

adapt_benchmark.py --points DIR writes, for each split, the clinic's cross-validated P(error > 4 mm)
and errors and the scored rest's (DIR/CLINIC_SIZE_splitK.npz; git-ignored, derived from ISBI
annotations).  This prints, per clinic and size, the errors over 4 mm caught and the points within
2 mm flagged (pooled over the splits, and the range by split) for the adapted rule
(adaptation.flag_threshold at FLAG_SHARE, P adjusted for the image's other points) and for the map's
own P at the same and other shares, through the library's own functions.

Then, where the splits saved their scored images' ids, the adapted rule by how far ISBI's two
doctors put each point apart: the reference is their mean, so where they part by more than 4 mm an
"error over 4 mm" may be a point one of them chose.  Shows how much of the flag shortfall is the
reference's own ambiguity.

    .venv/bin/python benchmarks/studies/adapt_flag_replay.py [--points runs/adapt_points] [--dataset ISBI]
"""

import argparse
import re
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]  # benchmarks/studies/STUDY.py -> the repository root
sys.path.insert(0, str(ROOT))

from CephLandmarksLib.annotations.datasets import load_dataset  # noqa: E402
from CephLandmarksLib.clinic.adaptation import FLAG_SHARE, flag_threshold  # noqa: E402
from CephLandmarksLib.training.metrics import roc_curve, threshold_at_tpr  # noqa: E402
from CephLandmarksLib.training.scoring import GOOD_ERROR_MM  # noqa: E402
from CephLandmarksLib.uncertainty.flag_score import IMAGE_WEIGHT, image_adjusted_p_large  # noqa: E402
from CephLandmarksLib.uncertainty.levels import LARGE_ERROR_MM  # noqa: E402

RULES = {  # name -> (share of the clinic's CV points flagged, image weight)
    f"adapted rule: {100 * FLAG_SHARE:.0f} %, weighed with the image (w {IMAGE_WEIGHT:g})": (FLAG_SHARE, IMAGE_WEIGHT),
    "27 %, the map's own P (the previous rule)": (0.27, 0.0),
    f"{100 * FLAG_SHARE:.0f} %, the map's own P": (FLAG_SHARE, 0.0),
    f"24 %, weighed with the image (w {IMAGE_WEIGHT:g})": (0.24, IMAGE_WEIGHT),
}


AGREEMENT_MM = (np.inf, 4.0, 2.0)  # points kept: all, or where the two doctors are at most this far apart


def replay(split: dict, share: float, weight: float, keep=None) -> tuple:
    """(large errors caught, large errors, good points flagged, good points) in one split (only the
    points `keep` says, default all)."""
    t = flag_threshold(split["cv_p_large"], share, weight)
    flagged = split["other_flag"] | (image_adjusted_p_large(split["p_large"], weight) >= t)
    keep = np.ones(flagged.shape, bool) if keep is None else keep
    large, good = keep & (split["errors_mm"] > LARGE_ERROR_MM), keep & (split["errors_mm"] <= GOOD_ERROR_MM)
    return flagged[large].sum(), large.sum(), flagged[good].sum(), good.sum()


def doctors_apart_mm(dataset: str, clinic: str) -> dict:
    """{image id: (L,) distance in mm between the senior and the junior doctor's points}."""
    senior, junior = (load_dataset(dataset, clinic, doctor) for doctor in ("senior", "junior"))
    return {a.id: np.linalg.norm(a.landmarks_px - b.landmarks_px, axis=1) * a.spacing_mm[0]
            for a, b in zip(senior, junior, strict=True)}


def caught_and_good(counts: np.ndarray) -> str:
    """"caught % (range by split) | good flagged % (range)" of replay's counts, one row per split."""
    caught, good = 100 * counts[:, 0] / counts[:, 1], 100 * counts[:, 2] / counts[:, 3]
    return (f"{100 * counts[:, 0].sum() / counts[:, 1].sum():.1f} % ({caught.min():.0f}–{caught.max():.0f}) | "
            f"{100 * counts[:, 2].sum() / counts[:, 3].sum():.1f} % ({good.min():.0f}–{good.max():.0f})")


def ranking(splits: list, keeps: list) -> tuple:
    """(AUC, share of good points flagged at 85 % of large errors caught) of the weighed P alone, pooled
    over the splits' kept points with one threshold."""
    score = np.concatenate([image_adjusted_p_large(s["p_large"], IMAGE_WEIGHT)[k]
                            for s, k in zip(splits, keeps, strict=True)])
    errors = np.concatenate([s["errors_mm"][k] for s, k in zip(splits, keeps, strict=True)])
    large = errors > LARGE_ERROR_MM
    t = threshold_at_tpr(score, large, 0.85)
    return roc_curve(score, large)[3], (score[errors <= GOOD_ERROR_MM] >= t).mean()


def print_by_agreement(groups: dict, dataset: str) -> None:
    print("\n| clinic | images (splits) | points kept (doctors apart) | errors > 4 mm | caught | points ≤ 2 mm "
          "flagged | AUC of the weighed P | good flagged at 85 % caught |\n|---|---|---|---|---|---|---|---|")
    for (clinic, size), splits in sorted(groups.items()):
        if not all("ids" in s for s in splits):
            continue
        apart = doctors_apart_mm(dataset, clinic)
        for limit in AGREEMENT_MM:
            keeps = [np.array([apart[str(i)] for i in s["ids"]]) <= limit for s in splits]
            counts = np.array([replay(s, FLAG_SHARE, IMAGE_WEIGHT, k) for s, k in zip(splits, keeps, strict=True)])
            auc, good_at_85 = ranking(splits, keeps)
            kept = "all" if limit == np.inf else f"≤ {limit:g} mm"
            print(f"| {clinic} | {size} ({len(splits)}) | {kept} | {counts[:, 1].sum()} | {caught_and_good(counts)} | "
                  f"{auc:.3f} | {100 * good_at_85:.1f} % |")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--points", default=str(ROOT / "runs/adapt_points"))
    ap.add_argument("--dataset", default=str(ROOT.parent / "shared/data/isbi2015"),
                    help="ISBI 2015, for the two doctors' own points")
    a = ap.parse_args(argv)
    groups = defaultdict(list)
    for path in sorted(Path(a.points).glob("*.npz")):
        m = re.fullmatch(r"(\w+?)_(\d+)_split(\d+)", path.stem)
        if m:
            groups[(m[1], int(m[2]))].append(dict(np.load(path)))
    if not groups:
        raise SystemExit(f"no saved splits in {a.points}: run adapt_benchmark.py first")
    print("| clinic | images (splits) | rule | errors > 4 mm caught | points ≤ 2 mm flagged |\n|---|---|---|---|---|")
    for (clinic, size), splits in sorted(groups.items()):
        for name, (share, weight) in RULES.items():
            counts = np.array([replay(s, share, weight) for s in splits])
            print(f"| {clinic} | {size} ({len(splits)}) | {name} | {caught_and_good(counts)} |")
    if Path(a.dataset).is_dir():
        print_by_agreement(groups, a.dataset)


if __name__ == "__main__":
    main()
