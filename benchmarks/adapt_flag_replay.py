"""Replay adapted flag rules on the per-point results adapt_benchmark.py saved, without adapting again.

adapt_benchmark.py --points DIR writes, for each split, the clinic's cross-validated P(error > 4 mm)
and errors and the scored rest's (DIR/CLINIC_SIZE_splitK.npz; git-ignored, derived from ISBI
annotations).  This prints, per clinic and size, the errors over 4 mm caught and the points within
2 mm flagged (pooled over the splits, and the range by split) for the adapted rule
(adaptation.flag_threshold at FLAG_SHARE, P adjusted for the image's other points) and for the map's
own P at the same and other shares, through the library's own functions.

    .venv/bin/python benchmarks/adapt_flag_replay.py [--points runs/adapt_points]
"""

import argparse
import re
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from CephLandmarksLib.adaptation import FLAG_SHARE, flag_threshold  # noqa: E402
from CephLandmarksLib.metrics import LARGE_ERROR_MM  # noqa: E402
from CephLandmarksLib.scoring import GOOD_ERROR_MM  # noqa: E402
from CephLandmarksLib.flag_score import IMAGE_WEIGHT, image_adjusted_p_large  # noqa: E402

RULES = {  # name -> (share of the clinic's CV points flagged, image weight)
    f"adapted rule: {100 * FLAG_SHARE:.0f} %, weighed with the image (w {IMAGE_WEIGHT:g})": (FLAG_SHARE, IMAGE_WEIGHT),
    "27 %, the map's own P (the previous rule)": (0.27, 0.0),
    f"{100 * FLAG_SHARE:.0f} %, the map's own P": (FLAG_SHARE, 0.0),
    f"24 %, weighed with the image (w {IMAGE_WEIGHT:g})": (0.24, IMAGE_WEIGHT),
}


def replay(split: dict, share: float, weight: float) -> tuple:
    """(large errors caught, large errors, good points flagged, good points) in one split."""
    t = flag_threshold(split["cv_p_large"], share, weight)
    flagged = split["other_flag"] | (image_adjusted_p_large(split["p_large"], weight) >= t)
    large, good = split["errors_mm"] > LARGE_ERROR_MM, split["errors_mm"] <= GOOD_ERROR_MM
    return flagged[large].sum(), large.sum(), flagged[good].sum(), good.sum()


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--points", default=str(ROOT / "runs/adapt_points"))
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
            caught, good = 100 * counts[:, 0] / counts[:, 1], 100 * counts[:, 2] / counts[:, 3]
            print(f"| {clinic} | {size} ({len(splits)}) | {name} | {100 * counts[:, 0].sum() / counts[:, 1].sum():.1f} % "
                  f"({caught.min():.0f}–{caught.max():.0f}) | {100 * counts[:, 2].sum() / counts[:, 3].sum():.1f} % "
                  f"({good.min():.0f}–{good.max():.0f}) |")


if __name__ == "__main__":
    main()
