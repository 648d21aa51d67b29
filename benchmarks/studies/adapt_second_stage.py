"""Clinic adaptation with and without the second stage (issue 29): Test2 plays the clinic, 20 images.

The question: is clinic adaptation with the refiner (every setting fitted on the combined coarse + fine
map, as `ceph-landmarks adapt --refine` does) no worse than the first stage's 0.99 mm of the adapt
benchmark (docs/adaptation.md)?  One fixed split, as in docs/analyses.md: the clinic is the first 20
Test2 images by id (301-320), the other 80 (321-400) are scored; --split K takes the adapt
benchmark's random split K instead (its 20 clinic images, in its order).  Both stages see the very same
observations: each Test2 image is observed once with the refiner (the coarse logits of the kept pass
are the first stage's own; the refiner adds its crops), and the first stage reads it without them.
Then, per stage, as benchmarks/adapt_benchmark.py does: adaptation.adapt on the 20 cases (method
chosen by cross-validation among none / offsets / fine-tune), the 80 others scored through
LandmarkDetector.decide with the shipped settings ("before") and the adapted ones ("after"; a
fine-tuned network's maps on the same frames, adaptation.read_with).

With the refiner and a fine-tune, the observation's fine crops stay centred on the base network's
points in the adapt benchmark's way of scoring; `detect` with the adapted model would centre them on
the tuned network's points.  The study scores both ("after" and "after, crops re-centred").

    .venv/bin/python benchmarks/studies/adapt_second_stage.py [--refiner FILE] [--methods none,offsets,fine-tune]

The observations (and encoder outputs) are cached under --cache (git-ignored: derived from ISBI),
keyed by the model's and the refiner's SHA-256.  Writes the figures to --out (JSON) and prints a
markdown table.  About 10 minutes on 2 CPU cores (3 to observe, the rest to adapt).
"""

import argparse
import json
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[2]  # benchmarks/studies/STUDY.py -> the repository root
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))  # adapt_benchmark stays in benchmarks/

from CephLandmarksLib.annotations.datasets import load_dataset  # noqa: E402
from CephLandmarksLib.clinic.adaptation import FINE_TUNE, METHODS, adapt, encode_case, read_with  # noqa: E402
from CephLandmarksLib.detection.predictor import LandmarkDetector  # noqa: E402
from CephLandmarksLib.imaging.images import read_radiograph  # noqa: E402
from CephLandmarksLib.memory import limit_heap_fragmentation  # noqa: E402
from CephLandmarksLib.network.heatmaps import mask_padding, softmax_2d  # noqa: E402
from CephLandmarksLib.store.registry import SHIPPED_MODELS_DIR, default_model_path, refiner_beside  # noqa: E402
from CephLandmarksLib.training.scoring import Case, figures, outcome  # noqa: E402

CLINIC_IMAGES = 20
KEYS = {"MRE mm": ("mre_mm", "{:.3f}"), "SDR 2 mm %": ("sdr_2mm_percent", "{:.1f}"),
        '"50 %" regions %': ("coverage_50_percent", "{:.1f}"), '"90 %" regions %': ("coverage_90_percent", "{:.1f}"),
        "errors > 4 mm flagged % (n)": ("large_errors_flagged_percent", "{:.1f}"),
        "points ≤ 2 mm flagged %": ("good_points_flagged_percent", "{:.1f}")}


def observe_all(detector, samples, cache: Path) -> list:
    """(observation with fine stage, encoder outputs) per sample, observed once (or read from the cache)."""
    key = {"model_sha256": detector.model.sha256, "refiner_sha256": detector.refiner.sha256,
           "ids": [s.id for s in samples]}
    path = cache / f"test2_{detector.refiner.sha256[:16]}.pt"
    if path.is_file():
        saved = torch.load(path, weights_only=False)
        if all(saved[k] == v for k, v in key.items()):
            return saved["observed"]
    observed = []
    for k, s in enumerate(samples):
        t0 = time.time()
        rad = read_radiograph(s.image_path, s.spacing_mm)
        case = Case(s.id, detector.observe(rad), np.asarray(s.landmarks_px, dtype=np.float64))
        encode_case(detector, case, rad)
        observed.append((case.obs, case.encoded))
        print(f"  observed {s.id} ({k + 1}/{len(samples)}) {time.time() - t0:.1f} s", file=sys.stderr, flush=True)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({**key, "observed": observed}, path)
    return observed


def recentred(detector, samples, cases, settings) -> list:
    """The cases with the fine crops centred where `detect` with the adapted model puts them: on the
    points of the case's (tuned) logits at the adapted temperatures."""
    temps = torch.as_tensor(settings.temperatures, dtype=torch.float32)
    out = []
    for s, c in zip(samples, cases, strict=True):
        probs = softmax_2d(mask_padding(c.obs.logits[None], [c.obs.frame]), temps)[0]
        inputs = detector.inputs(read_radiograph(s.image_path, s.spacing_mm))
        out.append(replace(c, obs=replace(c.obs, fine=detector._observe_fine(inputs, probs, c.obs.frame))))
    return out


def row(label, f) -> str:
    cells = []
    for key, fmt in KEYS.values():
        v = f[key]
        cells.append(fmt.format(v) + (f" ({f['n_large_errors']})" if key == "large_errors_flagged_percent" else ""))
    return f"| {label} | " + " | ".join(cells) + " |"


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dataset", default=str(ROOT.parent / "shared/data/isbi2015"))
    ap.add_argument("--model", default=None, help="base model (default: the shipped one)")
    ap.add_argument("--refiner", default=None, help="second stage (default: the refiner beside the model)")
    ap.add_argument("--methods", default=",".join(METHODS))
    ap.add_argument("--cache", default=str(ROOT / "runs/adapt_second_stage"))
    ap.add_argument("--out", default=str(ROOT / "docs/evaluation/second_stage_adapt.json"))
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--clinic", type=int, default=CLINIC_IMAGES, help="clinic images (the first by id)")
    ap.add_argument("--split", type=int, default=None,
                    help="adapt benchmark split K (its random 20 clinic images) instead of the first 20 by id")
    ap.add_argument("--limit", type=int, default=0, help="Test2 images used, clinic included (0: all; a smoke test)")
    a = ap.parse_args(argv)
    torch.set_num_threads(a.threads)
    limit_heap_fragmentation()
    model = a.model or default_model_path(SHIPPED_MODELS_DIR)
    two = LandmarkDetector(model, refiner=a.refiner or refiner_beside(model))
    one = LandmarkDetector(model)
    samples = sorted(load_dataset(a.dataset, "test2"), key=lambda s: s.id)[: a.limit or None]
    n = a.clinic
    observed = observe_all(two, samples, Path(a.cache))
    if a.split is not None:  # the adapt benchmark's random split: its clinic images, in its order, first
        order = np.random.default_rng(1000 * n + a.split).permutation(len(samples))
        by_id = {s.id: k for k, s in enumerate(sorted(samples, key=lambda s: s.id))}
        listed = [by_id[s.id] for s in load_dataset(a.dataset, "test2")[: a.limit or None]]
        samples, observed = [samples[listed[i]] for i in order], [observed[listed[i]] for i in order]
    truth = [np.asarray(s.landmarks_px, dtype=np.float64) for s in samples]
    names = list(two.info.landmark_abbreviations)
    results = {"model_sha256": two.model.sha256, "refiner_sha256": two.refiner.sha256, "split": a.split,
               "clinic_ids": [s.id for s in samples[:n]],
               "scored_ids": [s.id for s in samples[n:]], "methods": a.methods.split(",")}
    lines = ["| stage | " + " | ".join(KEYS) + " |", "|---" * (len(KEYS) + 1) + "|"]
    for stage, det in (("first stage", one), ("two stages", two)):
        cases = [Case(s.id, obs if det.refiner else replace(obs, fine=None), t, encoded=enc)
                 for s, (obs, enc), t in zip(samples, observed, truth, strict=True)]
        clinic, rest = cases[:n], cases[n:]
        t0 = time.time()
        before = figures(outcome(det, rest, det.settings), names)
        ad = adapt(det, clinic, a.methods.split(","))
        seconds = time.time() - t0
        scored = [read_with(ad.network, c) for c in rest] if ad.method == FINE_TUNE else rest
        r = {"method": ad.method, "methods_cv_mre_mm": ad.by_method, "seconds": seconds,
             "before": before, "after": figures(outcome(det, scored, ad.settings), names)}
        lines += [row(f"{stage}, before", before), row(f"{stage}, after ({ad.method})", r["after"])]
        if det.refiner is not None and ad.method == FINE_TUNE:
            again = recentred(det, samples[n:], scored, ad.settings)
            r["after_crops_recentred"] = figures(outcome(det, again, ad.settings), names)
            lines.append(row(f"{stage}, after ({ad.method}), crops re-centred", r["after_crops_recentred"]))
        results[stage] = r
        print(f"{stage}: {ad.method} chosen (CV MRE {ad.by_method}), MRE {before['mre_mm']:.3f} -> "
              f"{r['after']['mre_mm']:.3f}, {seconds:.0f} s", file=sys.stderr, flush=True)
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    from adapt_benchmark import _clean  # the adapt benchmark's plain-JSON conversion

    Path(a.out).write_text(json.dumps(_clean(results), indent=1, allow_nan=False) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
