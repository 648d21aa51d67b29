"""Clinic adaptation benchmark: Test2 plays the clinic (its annotation conventions differ).

For each clinic size (10, 20, 30 images) and each of 10 random splits, adapt the shipped
model on that many Test2 images (adaptation.adapt: method chosen by cross-validation within
them, then fitted on all) and score the REST of Test2 with the adapted settings, through
the same LandmarkDetector.decide that `detect` runs.  Control: the same with Test1 as the
clinic (it must not get worse).  Also: the shipped model's own conformal regions on Test1
and Test2, calibrated on its 20 held-out training images.

The network runs once per image; its logits are cached (float16) under --cache, a
git-ignored folder of derived data (never commit it: ISBI licence).

    .venv/bin/python benchmarks/adapt_benchmark.py --dataset ../shared/data/isbi2015 [--splits 10]

Writes docs/adaptation/adapt_benchmark.json and prints a markdown summary.
"""

import argparse
import json
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from CephLandmarksLib.annotations.datasets import load_dataset  # noqa: E402
from CephLandmarksLib.clinic.adaptation import (  # noqa: E402
    FINE_TUNE,
    FLAG_SHARE,
    METHODS,
    adapt,
    encode_case,
    flag_threshold,
    read_with,
)
from CephLandmarksLib.detection.predictor import LandmarkDetector, Observation  # noqa: E402
from CephLandmarksLib.imaging.geometry import ModelFrame  # noqa: E402
from CephLandmarksLib.memory import limit_heap_fragmentation  # noqa: E402
from CephLandmarksLib.store.registry import SHIPPED_MODELS_DIR, default_model_path  # noqa: E402
from CephLandmarksLib.training.metrics import threshold_at_tpr  # noqa: E402
from CephLandmarksLib.training.scoring import GOOD_ERROR_MM, Case, figures, outcome  # noqa: E402
from CephLandmarksLib.uncertainty.conformal import fit_region_masses, masses_for  # noqa: E402
from CephLandmarksLib.uncertainty.flag_score import IMAGE_WEIGHT, image_adjusted_p_large  # noqa: E402
from CephLandmarksLib.uncertainty.levels import LARGE_ERROR_MM  # noqa: E402

SIZES = (10, 20, 30)


def cache_cases(detector, samples, path: Path) -> list:
    """Observe each sample once (or read the cache): cases with float16 logits."""
    if path.is_file():
        saved = torch.load(path, weights_only=False)
        if saved["model_sha256"] == detector.model.sha256 and saved["ids"] == [s.id for s in samples]:
            return [Case(i, Observation(lg.float(), ModelFrame(*fr[:4], fr[4]), *rest), t)
                    for i, lg, fr, rest, t in zip(saved["ids"], saved["logits"], saved["frames"], saved["rest"],
                                                  saved["true_px"], strict=True)]
    from CephLandmarksLib.imaging.images import read_radiograph

    cases = []
    for k, s in enumerate(samples):
        t0 = time.time()
        obs = detector.observe(read_radiograph(s.image_path, s.spacing_mm))
        cases.append(Case(s.id, obs, np.asarray(s.landmarks_px, dtype=np.float64)))
        print(f"  {path.stem} {k + 1}/{len(samples)} {time.time() - t0:.1f} s", file=sys.stderr, flush=True)
    f = lambda fr: (fr.image_size, fr.model_size, fr.scaled_size, fr.offset, fr.mirror_x)  # noqa: E731
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"model_sha256": detector.model.sha256, "ids": [c.id for c in cases],
                "logits": [c.obs.logits.half() for c in cases], "frames": [f(c.obs.frame) for c in cases],
                "rest": [(c.obs.orientation, c.obs.alignment, c.obs.framing, c.obs.image) for c in cases],
                "true_px": [c.true_px for c in cases]}, path)
    return cases


def cache_encoded(detector, samples, cases, path: Path) -> None:
    """Fill each case's encoder outputs (fine-tune needs them), cached (bfloat16) like the logits."""
    from CephLandmarksLib.imaging.images import read_radiograph

    saved = torch.load(path, weights_only=False) if path.is_file() else None
    if saved is None or saved["model_sha256"] != detector.model.sha256 or saved["ids"] != [c.id for c in cases]:
        for s, c in zip(samples, cases, strict=True):
            encode_case(detector, c, read_radiograph(s.image_path, s.spacing_mm))
        torch.save({"model_sha256": detector.model.sha256, "ids": [c.id for c in cases],
                    "encoded": [c.encoded for c in cases]}, path)
        return
    for c, e in zip(cases, saved["encoded"], strict=True):
        c.encoded = e


def load_all(detector, dataset, cache: Path, encode=("test1", "test2")) -> dict:
    holdout_ids = detector.info.training.get("holdout_ids") or []
    train = {s.id: s for s in load_dataset(dataset, "train")}
    sets = {"holdout": [train[i] for i in holdout_ids],
            "test1": load_dataset(dataset, "test1"), "test2": load_dataset(dataset, "test2")}
    cases = {name: cache_cases(detector, samples, cache / f"{name}.pt") for name, samples in sets.items()}
    for name in encode:
        cache_encoded(detector, sets[name], cases[name], cache / f"{name}_encoded.pt")
    return cases


def split_study(argv, description: str, dumps: str, collect, describe, keep_finished: bool = False):
    """The command line of a study over the benchmark's clinic splits (adapt_disagreement_study,
    adapt_fold_spread_study): for each split, collect(detector, cases, split) -> arrays, saved under
    --dumps (git-ignored: derived from ISBI annotations) with a line describe(dump) on stderr, unless
    --from-dumps; keep_finished skips splits already saved.  Returns (args, the saved dumps)."""
    ap = argparse.ArgumentParser(description=description)
    ap.add_argument("--dataset", default=str(ROOT.parent / "shared/data/isbi2015"))
    ap.add_argument("--cache", default=str(ROOT / "runs/adapt_cache"))
    ap.add_argument("--dumps", default=str(ROOT / dumps))
    ap.add_argument("--clinic", default="test1")
    ap.add_argument("--splits", type=int, default=5)
    ap.add_argument("--from-dumps", action="store_true", help="print the table from the saved splits only")
    a = ap.parse_args(argv)
    dumps_dir = Path(a.dumps)
    paths = [dumps_dir / f"{a.clinic}_{split}.npz" for split in range(a.splits)]
    if not a.from_dumps:
        limit_heap_fragmentation()
        detector = LandmarkDetector(default_model_path(SHIPPED_MODELS_DIR))
        cases = load_all(detector, a.dataset, Path(a.cache), encode=(a.clinic,))[a.clinic]
        dumps_dir.mkdir(parents=True, exist_ok=True)
        for split, path in enumerate(paths):
            if keep_finished and path.is_file():
                continue
            d = collect(detector, cases, split)
            np.savez(path, **d)
            print(f"{a.clinic} split {split}: {describe(d)}", file=sys.stderr, flush=True)
    saved = [dict(np.load(p)) for p in paths if p.is_file()]
    if not saved:
        raise SystemExit(f"no saved splits in {dumps_dir}: run without --from-dumps first")
    return a, saved


FIXED_P_LARGE = 0.02  # the previous adapted flag rule (P(error > 4 mm) >= 2 %), replayed for comparison
FLAG_RULES = {  # alternative flag rules, each (threshold fitted on the clinic's CV outcome, image weight of the score)
    "p_large catching 80 % of the clinic's CV errors > 3 mm": (lambda cv: threshold_at_tpr(
        cv.p_large.ravel(), cv.errors_mm.ravel() > 3.0, 0.8), 0.0),
    **{f"p_large >= {t:g} (fixed)": ((lambda cv, t=t: t), 0.0) for t in (FIXED_P_LARGE, 0.01, 0.015, 0.03)},
    **{f"p_large flagging {q:.0%} of the clinic's CV points":
       ((lambda cv, q=q: flag_threshold(cv.p_large, q, 0.0)), 0.0)
       for q in (0.25, 0.27, 0.30)},
    # the share rule on P weighed with the image's other points (the adapted rule at FLAG_SHARE)
    **{f"image-adjusted p_large flagging {q:.0%} of the clinic's CV points":
       ((lambda cv, q=q: flag_threshold(cv.p_large, q, IMAGE_WEIGHT)), IMAGE_WEIGHT) for q in (0.24, FLAG_SHARE, 0.27)},
}


def uncertain(out):
    """(n, L): the points each case's own flag rule calls uncertain (detect.Settings.uncertain)."""
    return np.array([s.uncertain(e, p) for p, e, s in zip(out.p_large, out.ere_mm, out.settings, strict=True)])


def flag_alternatives(cv, scored) -> dict:
    """Each FLAG_RULES rule fitted on the clinic's cross-validated outcome `cv` and applied to `scored`:
    the uncertainty flag replaced, the other reasons (missing, implausible, near edge) kept."""
    other = scored.flagged & ~uncertain(scored)
    large, good = scored.errors_mm > LARGE_ERROR_MM, scored.errors_mm <= GOOD_ERROR_MM
    out = {}
    for name, (rule, weight) in FLAG_RULES.items():
        t = float(rule(cv))
        f = other | (image_adjusted_p_large(scored.p_large, weight) >= t)
        out[name] = {"threshold": t, "large_errors_flagged_percent": float(100 * f[large].mean()),
                     "good_points_flagged_percent": float(100 * f[good].mean())}
    return out


def brief(f: dict) -> dict:
    return {k: v for k, v in f.items() if k != "per_landmark"}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dataset", default=str(ROOT.parent / "shared/data/isbi2015"))
    ap.add_argument("--model", default=None)
    ap.add_argument("--cache", default=str(ROOT / "runs/adapt_cache"))
    ap.add_argument("--plan", default=",".join(f"{c}:{n}:10" for c in ("test2", "test1") for n in SIZES),
                    help="CLINIC:IMAGES:SPLITS,... (default: Test2 and Test1 as the clinic, 10, 20 and 30 images, "
                         "10 random splits each)")
    ap.add_argument("--methods", default=",".join(METHODS), help="adaptation methods to choose from")
    ap.add_argument("--cache-only", action="store_true")
    ap.add_argument("--out", default=str(ROOT / "docs/adaptation/adapt_benchmark.json"))
    ap.add_argument("--points", default=str(ROOT / "runs/adapt_points"),
                    help="folder for each split's per-point P(error > 4 mm) and errors, to replay flag rules "
                         "(git-ignored: derived from ISBI annotations)")
    ap.add_argument("--resume", action="store_true",
                    help="keep the splits already in --out (same model, same clinic ids) and run only the missing ones")
    a = ap.parse_args(argv)
    limit_heap_fragmentation()  # thousands of decides: a flag-study loop without it was OOM-killed at 24 GB
    detector = LandmarkDetector(a.model or default_model_path(SHIPPED_MODELS_DIR))
    sets = load_all(detector, a.dataset, Path(a.cache))
    if a.cache_only:
        return
    names = list(detector.info.landmark_abbreviations)
    results = {"model_sha256": detector.model.sha256, "plan": a.plan}
    earlier = finished_runs(Path(a.out), detector.model.sha256) if a.resume else {}

    # The shipped model's own regions: conformal masses fitted on its held-out training images.
    nominal = replace(detector.settings, region_masses=masses_for({}, len(names)), regions="nominal")
    detector.settings = nominal  # the base as trained and temperature-calibrated, nominal regions
    masses = fit_region_masses(outcome(detector, sets["holdout"], nominal).scores)
    shipped = replace(detector.settings, region_masses={k: np.asarray(v) for k, v in masses.items()},
                      regions="split-conformal")
    detector.settings = shipped  # the model as it ships: conformal regions from its held-out images
    for name in ("test1", "test2"):
        results[f"base_{name}_nominal"] = figures(outcome(detector, sets[name], nominal), names)
        results[f"base_{name}_conformal_holdout"] = figures(outcome(detector, sets[name], shipped), names)

    out = Path(a.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    shipped_on = {name: outcome(detector, sets[name], shipped) for name in ("test1", "test2")}
    for item in a.plan.split(","):
        clinic, size, n_splits = item.split(":")
        size, cases = int(size), sets[clinic]
        runs = results.setdefault(f"{clinic}_{size}", [])
        for split in range(int(n_splits)):
            t0 = time.time()
            order = np.random.default_rng(1000 * size + split).permutation(len(cases))
            clinic_cases, rest = [cases[i] for i in order[:size]], [cases[i] for i in order[size:]]
            done = earlier.get(f"{clinic}_{size}", [])
            if split < len(done) and done[split]["clinic_ids"] == [c.id for c in clinic_cases]:
                runs.append(done[split])  # finished in an earlier run of this plan
                continue
            ad = adapt(detector, clinic_cases, a.methods.split(","))
            seconds = time.time() - t0
            after = outcome(detector, [read_with(ad.network, c) for c in rest] if ad.method == FINE_TUNE else rest,
                            ad.settings)
            runs.append({"method": ad.method, "seconds": seconds, "clinic_ids": [c.id for c in clinic_cases],
                         "methods_cv_mre_mm": ad.by_method,
                         "before": figures(shipped_on[clinic].subset(order[size:]), names),
                         "after": figures(after, names),
                         "flag_alternatives": flag_alternatives(ad.outcomes[ad.method], after),
                         "cv_after": brief(ad.after), "offsets_mm": None if ad.settings.offsets_mm is None
                         else np.round(ad.settings.offsets_mm, 3).tolist()})
            save_points(Path(a.points) / f"{clinic}_{size}_split{split}.npz", ad.outcomes[ad.method], after,
                        [c.id for c in rest])
            r = runs[-1]
            alt = " ".join(f"{v['large_errors_flagged_percent']:.0f}/{v['good_points_flagged_percent']:.0f}"
                           for v in r["flag_alternatives"].values())
            print(f"{clinic} n={size} split {split}: {ad.method} {ad.by_method}, MRE {r['before']['mre_mm']:.3f} -> "
                  f"{r['after']['mre_mm']:.3f}, cov90 {r['before']['coverage_90_percent']:.1f} -> "
                  f"{r['after']['coverage_90_percent']:.1f}, "
                  f"flags >4mm {r['after']['large_errors_flagged_percent']:.0f} "
                  f"<=2mm {r['after']['good_points_flagged_percent']:.0f} (p_large rules {alt}), {r['seconds']:.0f} s",
                  file=sys.stderr, flush=True)
            out.write_text(json.dumps(_clean(results), indent=1, allow_nan=False) + "\n")
    print(summary(results))


def save_points(path: Path, cv, scored, ids: list) -> None:
    """Per point: the clinic's cross-validated P(error > 4 mm) and errors, and the scored rest's (images
    `ids`), with its other flag reasons: enough to replay any flag rule on these adapted models."""
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(path, cv_p_large=cv.p_large, cv_errors_mm=cv.errors_mm, p_large=scored.p_large,
                        errors_mm=scored.errors_mm, other_flag=scored.flagged & ~uncertain(scored), ids=np.array(ids))


def finished_runs(out: Path, model_sha256: str) -> dict:
    """The splits an earlier run wrote to `out`, if it scored the same model (else none)."""
    if not out.is_file():
        return {}
    earlier = json.loads(out.read_text())
    if earlier.get("model_sha256") != model_sha256:
        print(f"{out} scored another model; starting afresh", file=sys.stderr)
        return {}
    return {k: v for k, v in earlier.items() if isinstance(v, list)}


def _clean(x):
    """Plain JSON: numpy numbers as floats, NaN (e.g. no error over 4 mm in a subset) as null."""
    if isinstance(x, dict):
        return {k: _clean(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_clean(v) for v in x]
    if isinstance(x, (float, np.floating)):
        return float(x) if np.isfinite(x) else None
    if isinstance(x, np.integer):
        return int(x)
    return x


def _mean(runs, key, part="after"):
    return float(np.nanmean([np.nan if r[part][key] is None else r[part][key] for r in runs]))


def summary(results: dict) -> str:
    keys = ("mre_mm", "sdr_2mm_percent", "coverage_50_percent", "coverage_90_percent",
            "large_errors_flagged_percent", "good_points_flagged_percent")
    lines = ["| clinic | images | method chosen | MRE mm | SDR 2 mm % | 50 % regions | 90 % regions | "
             "errors > 4 mm flagged | points ≤ 2 mm flagged | worst landmark 90 % |", "|" + "---|" * 10]
    for k, runs in results.items():
        if not isinstance(runs, list):
            continue
        clinic, size = k.split("_")
        methods = {m: sum(r["method"] == m for r in runs) for m in {r["method"] for r in runs}}
        for part in ("before", "after"):
            per = runs[0][part]["per_landmark"]
            cov, name = min((np.mean([r[part]["per_landmark"][j]["coverage_90_percent"] for r in runs]), p["landmark"])
                            for j, p in enumerate(per))
            lines.append(f"| {clinic} {part} | {size} ({len(runs)} splits) | {methods if part == 'after' else '–'} | "
                         + " | ".join(f"{_mean(runs, key, part):.2f}" for key in keys) + f" | {name} {cov:.0f} |")
    for k, f in results.items():
        if k.startswith("base_"):
            lines.append(f"| {k} | – | – | " + " | ".join(f"{f[key]:.2f}" for key in keys) + " | "
                         f"{min(p['coverage_90_percent'] for p in f['per_landmark']):.0f} |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
