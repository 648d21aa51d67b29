"""How low can temperature scaling take the ECE at all?  An oracle on the test sets.

    python benchmarks/studies/calibration_oracle.py --model M [--dataset DIR] [--out docs/calibration_oracle.json]

Diagnostic only: nothing here is shipped or chosen.  For each test split the temperatures
are fitted *on that split itself* (in-sample, as the paper's public code does) and the ECE
(paper's bins) is measured on the same points.  If even these temperatures leave the ECE
above 1 %, no calibration set, however large or well matched, lets per-landmark temperature
scaling reach 1 % on this model; the gap is in the shape of the maps, not in the data the
temperatures were fitted on.  Rows:
  uncalibrated       T = 1
  shipped            the model's temperatures (fitted on its 20 held-out training images)
  oracle nll         per landmark, NLL of the true pixel, fitted on the split
  oracle nll_shared  one T, NLL, fitted on the split
  oracle bce         per landmark, cross-entropy of the hit event itself, fitted on the split
  oracle best shared the single T (grid 0.5-4) with the lowest ECE on the split
"""

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the repository root
sys.path.insert(0, str(Path(__file__).resolve().parent))  # calibration_study, beside it

from calibration_study import ISBI, Summary, fit  # noqa: E402

from CephLandmarksLib.annotations.datasets import load_dataset  # noqa: E402
from CephLandmarksLib.store.modelfile import atomic_write, load_model  # noqa: E402
from CephLandmarksLib.training.metrics import reliability  # noqa: E402
from CephLandmarksLib.training.prepared import prepare, prepared_logits, subset  # noqa: E402

CHUNK = 10


def split_summary(m, dataset, split) -> Summary:
    """One Summary of a whole split, built chunk by chunk (the logits of a split do not fit in memory)."""
    data = prepare(load_dataset(dataset, split), m.info.input_size, f"reading {split}")
    parts = [Summary(prepared_logits(m.net, subset(data, range(i, min(i + CHUNK, len(data.ids)))), "cpu"),
                     data.uv[i:i + CHUNK]) for i in range(0, len(data.ids), CHUNK)]
    s = Summary.__new__(Summary)
    s.L, s.centres = parts[0].L, parts[0].centres
    for key in ("inside", "z_true", "hit", "log_counts"):
        setattr(s, key, torch.cat([getattr(p, key) for p in parts]))
    return s


def ece(s: Summary, log_t) -> float:
    return reliability(s.confidence(log_t, slice(None)).detach().numpy(), s.hit.numpy())["ece"]


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", required=True)
    ap.add_argument("--dataset", default=str(ISBI))
    ap.add_argument("--out", default="")
    a = ap.parse_args()
    m = load_model(a.model)
    results = {}
    for split in ("test1", "test2"):
        s = split_summary(m, a.dataset, split)
        every = torch.arange(s.hit.shape[0])
        grid = np.exp(np.linspace(np.log(0.5), np.log(4.0), 61))
        shared = [ece(s, torch.full((s.L,), float(np.log(t)))) for t in grid]
        rows = {
            "uncalibrated": ece(s, torch.zeros(s.L)),
            "shipped": ece(s, torch.tensor(m.info.temperatures).log()),
            "oracle nll": ece(s, fit(s, every, "nll")),
            "oracle nll_shared": ece(s, fit(s, every, "nll_shared")),
            "oracle bce": ece(s, fit(s, every, "bce")),
            "oracle best shared": float(min(shared)),
        }
        results[split] = {"points": int(s.hit.numel()), "hits": int(s.hit.sum()), "ece_percent": rows,
                          "best_shared_temperature": float(grid[int(np.argmin(shared))])}
        print(f"{split}: {s.hit.numel()} points, {int(s.hit.sum())} hits", flush=True)
    print("\n| temperatures | ECE Test1 (%) | ECE Test2 (%) |\n|---|---|---|")
    for name in results["test1"]["ece_percent"]:
        print(f"| {name} | {results['test1']['ece_percent'][name]:.2f} | {results['test2']['ece_percent'][name]:.2f} |")
    print("best shared T: " + ", ".join(f"{sp} {results[sp]['best_shared_temperature']:.2f}" for sp in results))
    if a.out:
        atomic_write(a.out, lambda p: Path(p).write_text(json.dumps({"model": m.info.name, **results}, indent=1)))


if __name__ == "__main__":
    main()
