"""Would the cross-validation's fold fine-tunes improve the adapted flags, or the fine-tune itself?

While choosing, `adapt` fine-tunes the decoder five times, each on four fifths of the clinic's
images, then once on all of them (the final network it ships).  Where the five fold networks put a
landmark in different places, the final one rests on a few images' say and is more likely wrong.
Shipping this would cost five more decoders in an adapted file and five more decoder passes per
image, so it has to earn it.

For each split of 20 clinic images (the adapt benchmark's splits), the fold and final fine-tunes
are trained as `adapt` trains them, the settings are fitted on the out-of-fold readings as `adapt`
fits a chosen fine-tune, and every point of the rest of the set gets: its error under the final
network, its P(error > 4 mm) weighed with the image's other points (the adapted flag score), the
folds' spread (mean distance of the five fold points from the final point, mm), the folds' mean P,
the error of the six networks' mean point, and the error and P of a "soup": one network whose weights
are the mean of the six (no cost at detection).  Printed: ROC AUC for errors over 4 mm and the share
of points within 2 mm flagged at the threshold catching 85 % of those errors, for each score and for
the weighed P's log-odds + b x log(spread + 0.3 mm); then the adapted flag rule (its threshold fitted
on the clinic's cross-validated readings, as `adapt` fits it) applied to the final network's P and to
the folds' mean P: the folds read a new image as they read their held-out clinic images, so their P
should flag the share the rule was fitted for, where the final network, trained on more images, is
sharper and flags less; and that rule with its share refitted on the final network's reading of
unlabelled clinic images (the first 20 or 40 rest images; scored on the rest after the first 40).
Test1 is the clinic where flag rules are chosen; Test2 (the benchmark's clinic) only reports.
Per-split arrays go to --dumps (git-ignored, derived from ISBI annotations); --from-dumps prints the
table from them again.

    .venv/bin/python benchmarks/studies/adapt_fold_spread_study.py [--clinic test1] [--splits 5] [--from-dumps]
"""

import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]  # benchmarks/studies/STUDY.py -> the repository root
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))  # adapt_benchmark stays in benchmarks/
sys.path.insert(0, str(Path(__file__).resolve().parent))  # the other studies

CLINIC_IMAGES = 20
SPREAD_FLOOR_MM = 0.3  # keeps log(spread) finite where the folds agree to the pixel
WEIGHTS = (1.0, 2.0, 3.0, 4.0, 6.0)  # b in log-odds + b x log(spread + floor)
UNLABELLED = 40  # rest images at most taken as a clinic's unlabelled images (the share refitted on them)


def collect(detector, cases, split: int) -> dict:
    """Per scored point of one split: the final fine-tune's error and P, the folds' spread and mean P,
    the error of the networks' mean point, and the soup's error and P; and the clinic's CV P."""
    from CephLandmarksLib.clinic.adaptation import (
        FINE_TUNE,
        cross_validate,
        fit,
        fold_indices,
        read_with,
        tuned_network,
    )
    from CephLandmarksLib.training.metrics import radial_errors_mm

    order = np.random.default_rng(1000 * CLINIC_IMAGES + split).permutation(len(cases))
    clinic, rest = [cases[i] for i in order[:CLINIC_IMAGES]], [cases[i] for i in order[CLINIC_IMAGES:]]
    folds = fold_indices(len(clinic))  # adapt's folds
    nets = [tuned_network(detector, [c for i, c in enumerate(clinic) if i not in held]) for held in folds]
    out_of_fold = [None] * len(clinic)
    for net, held in zip(nets, folds, strict=True):
        for i in held:
            out_of_fold[i] = read_with(net, clinic[i])
    cv_p = cross_validate(detector, out_of_fold, FINE_TUNE).p_large
    settings = fit(detector, out_of_fold, "none", cv_p)  # as adapt fits a chosen fine-tune
    final = tuned_network(detector, clinic)
    soup = weight_average([*nets, final])
    rows = {k: [] for k in ("err", "p", "spread_mm", "p_folds", "err_mean_point", "err_soup", "p_soup")}
    for c in rest:
        d = detector.decide(read_with(final, c).obs, settings, contours=False, extents=False)
        in_soup = detector.decide(read_with(soup, c).obs, settings, contours=False, extents=False)
        rows["err_soup"].append(radial_errors_mm(in_soup.points_px, c.true_px, in_soup.spacing_mm))
        rows["p_soup"].append([lm.p_large_error for lm in in_soup.landmarks])
        by_fold = [detector.decide(read_with(n, c).obs, settings, contours=False, extents=False) for n in nets]
        mm = np.asarray(d.spacing_mm, dtype=float)
        points = np.stack([f.points_px for f in by_fold])  # (folds, L, 2)
        rows["err"].append(radial_errors_mm(d.points_px, c.true_px, d.spacing_mm))
        rows["p"].append([lm.p_large_error for lm in d.landmarks])
        rows["spread_mm"].append(np.hypot(*((points - d.points_px) * mm).transpose(2, 0, 1)).mean(axis=0))
        rows["p_folds"].append(np.mean([[lm.p_large_error for lm in f.landmarks] for f in by_fold], axis=0))
        mean_point = np.concatenate([points, d.points_px[None]]).mean(axis=0)
        rows["err_mean_point"].append(radial_errors_mm(mean_point, c.true_px, d.spacing_mm))
    return {"cv_p": cv_p, **{k: np.asarray(v, dtype=float) for k, v in rows.items()}}


def weight_average(nets):
    """One network whose weights are the mean of the nets' (all fine-tuned from the same base: a "soup")."""
    import copy

    import torch

    soup = copy.deepcopy(nets[-1])
    states = [n.state_dict() for n in nets]
    soup.load_state_dict({k: torch.stack([s[k].float() for s in states]).mean(0).to(v.dtype) if v.is_floating_point()
                          else v for k, v in states[-1].items()})
    return soup


def table(dumps) -> list:
    """Markdown rows: per score, AUC for the final network's errors > 4 mm and good points flagged at 85 % caught."""
    from adapt_flag_study import ranking

    from CephLandmarksLib.clinic.adaptation import flag_threshold
    from CephLandmarksLib.training.scoring import GOOD_ERROR_MM
    from CephLandmarksLib.uncertainty.flag_score import IMAGE_WEIGHT, image_adjusted_p_large, log_odds
    from CephLandmarksLib.uncertainty.levels import LARGE_ERROR_MM

    def weighed(key):
        return log_odds(np.concatenate([image_adjusted_p_large(d[key], IMAGE_WEIGHT) for d in dumps]))

    err = np.concatenate([d["err"] for d in dumps])
    err_soup = np.concatenate([d["err_soup"] for d in dumps])
    log_s = np.log(np.concatenate([d["spread_mm"] for d in dumps]) + SPREAD_FLOOR_MM)
    scores = {"P weighed with the image (the adapted score)": weighed("p"),
              "the folds' mean P, weighed": weighed("p_folds"),
              "the folds' spread": log_s,
              **{f"weighed P + {b:g} × log spread": weighed("p") + b * log_s for b in WEIGHTS},
              **{f"the folds' weighed P + {b:g} × log spread": weighed("p_folds") + b * log_s for b in WEIGHTS}}

    def by_split(key):
        return ", ".join(f"{np.nanmean(d[key]):.3f}" for d in dumps)

    def rule_row(name, flagged, errors_mm) -> str:
        """| name | points flagged | errors > 4 mm caught | points within 2 mm flagged |, pooled over splits."""
        f, e = np.concatenate(flagged).ravel(), np.concatenate(errors_mm).ravel()
        return (f"| {name} | {100 * f.mean():.1f} % | {100 * f[e > LARGE_ERROR_MM].mean():.1f} % | "
                f"{100 * f[e <= GOOD_ERROR_MM].mean():.1f} % |")

    lines = [f"MRE, pooled (by split), of the final fine-tune: {np.nanmean(err):.3f} mm ({by_split('err')}); "
             "of the six networks' mean point: "
             f"{np.nanmean(np.concatenate([d['err_mean_point'] for d in dumps])):.3f} mm "
             f"({by_split('err_mean_point')}); of the soup: {np.nanmean(err_soup):.3f} mm ({by_split('err_soup')})",
             f"errors > 4 mm: final {int((err > LARGE_ERROR_MM).sum())}, soup {int((err_soup > LARGE_ERROR_MM).sum())}",
             "", "| score | AUC, errors > 4 mm | points ≤ 2 mm flagged at 85 % caught |", "|---|---|---|"]
    for name, s in scores.items():
        auc, good_flagged, _ = ranking(s, err)
        lines.append(f"| {name} | {auc:.3f} | {good_flagged:.1f} % |")
    lines += ["", "The adapted rule (each split's threshold flags FLAG_SHARE of its clinic's cross-validated points), "
              "applied to:", "", "| P read by | points flagged | errors > 4 mm caught | points ≤ 2 mm flagged |",
              "|---|---|---|---|"]
    for name, key, err_key in (("the final network (the product)", "p", "err"), ("the folds, mean", "p_folds", "err"),
                               ("the soup, for its own errors", "p_soup", "err_soup")):
        lines.append(rule_row(name, [image_adjusted_p_large(d[key], IMAGE_WEIGHT) >= flag_threshold(d["cv_p"])
                                     for d in dumps], [d[err_key] for d in dumps]))
    lines += ["", "The share refitted on unlabelled clinic images (the final network's reading of the first N rest "
                  "images), scored on the rest after the first 40:", "",
              "| threshold fitted on | points flagged | errors > 4 mm caught | points ≤ 2 mm flagged |",
              "|---|---|---|---|"]
    for n in (0, 20, UNLABELLED):
        flagged, e = [], []
        for d in dumps:
            t = flag_threshold(d["cv_p"] if n == 0 else d["p"][:n])
            flagged.append(image_adjusted_p_large(d["p"], IMAGE_WEIGHT)[UNLABELLED:] >= t)
            e.append(d["err"][UNLABELLED:])
        lines.append(rule_row("the clinic CV (the product)" if n == 0 else f"{n} unlabelled images", flagged, e))
    auc, good_flagged, _ = ranking(weighed("p_soup"), err_soup)
    lines += ["", f"The soup's own weighed P for its own errors: AUC {auc:.3f}, {good_flagged:.1f} % of its points "
                  f"within 2 mm flagged at 85 % caught."]
    return lines


def main(argv=None):
    from adapt_benchmark import split_study

    a, dumps = split_study(argv, __doc__.splitlines()[0], "runs/adapt_fold_spread", collect, keep_finished=True,
                           describe=lambda d: f"MRE final {np.nanmean(d['err']):.3f}, mean point "
                                              f"{np.nanmean(d['err_mean_point']):.3f}, "
                                              f"soup {np.nanmean(d['err_soup']):.3f} mm")
    print(f"{a.clinic} as the clinic, {len(dumps)} splits of {CLINIC_IMAGES} images, every split fine-tuned")
    print("\n".join(table(dumps)))


if __name__ == "__main__":
    main()
