"""The second stage against the first on the base model's held-out training images, from a
train-refiner work folder (its `holdout.pt` cache and a checkpoint), while training runs or after.

    python benchmarks/refiner_holdout.py --work /tmp/work/refine29/work [--checkpoint best.pt]

Prints, per landmark and overall: the first stage's MRE, the fine map's everywhere, the combined
map's (fine only where the coarse mass lies mostly inside the crop), SDR 2 mm, and how many
points were refined.  Temperatures are fitted on the same images (as train-refiner does), which
does not move the points.  Test sets are not read.
"""

import argparse
import json
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from CephLandmarksLib.network.refiner import RefinerNet  # noqa: E402
from CephLandmarksLib.training.loop import read_checkpoint  # noqa: E402
from CephLandmarksLib.training.refiner_holdout import HoldoutSet, fit_temperatures  # noqa: E402


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--work", required=True, help="the train-refiner work folder")
    p.add_argument("--checkpoint", default="best.pt")
    p.add_argument("--threads", type=int, default=1)
    a = p.parse_args(argv)
    torch.set_num_threads(a.threads)
    work = Path(a.work)
    hold = HoldoutSet.from_plain(torch.load(work / "holdout.pt", weights_only=True)["value"])
    state = read_checkpoint(work / a.checkpoint)
    net = RefinerNet(hold.crops.shape[1], tuple(state["config"]["channels"]))
    net.load_state_dict(state["model"])
    temps = torch.as_tensor(fit_temperatures(net, hold), dtype=torch.float32)
    r = hold.evaluate(net, temps, combined=True)
    print(f"checkpoint {a.checkpoint}: epoch {state['epoch']} of {state['config']['epochs']}; {len(hold.ids)} images")
    print(f"{'landmark':>8} {'coarse':>7} {'fine':>7} {'combined':>8}")
    for i, (c, f, m) in enumerate(zip(r["coarse_mre_per_landmark_mm"], r["fine_mre_per_landmark_mm"],
                                      r["combined_mre_per_landmark_mm"], strict=True)):
        print(f"{i + 1:>8} {c:7.3f} {f:7.3f} {m:8.3f}")
    print(json.dumps({k: round(v, 4) for k, v in r.items() if isinstance(v, float)}))


if __name__ == "__main__":
    main()
