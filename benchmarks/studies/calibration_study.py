"""Which temperature objective calibrates best?  Cross-validated on the model's own holdout.

    python benchmarks/studies/calibration_study.py --model M [--dataset DIR] [--out docs/calibration_study.json]

Only the held-out training images recorded in the model are used (never Test1/Test2).  They
are split into 5 folds by image; temperatures are fitted on 4 folds and the confidence of
the fifth is scored, for each objective:
  none         T = 1
  nll          per landmark, NLL of the true pixel (what `calibrate` does)
  nll_shared   one T for all landmarks, NLL
  bce          per landmark, binary cross-entropy of "argmax is a hit" against the confidence
  bce_shared   one T, binary cross-entropy
  *_shrink L   per landmark, with a penalty L * (log T - log T_shared)^2 pulling towards a shared T
Scores: the cross-validated Brier score and BCE of the hit event (proper scores) and the ECE
(paper bins; noisy with a few hundred points).  Each map is summarised by a histogram of
(logit - max logit) in bins of 0.01, so a fit takes seconds instead of minutes.
"""

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the repository root

from CephLandmarksLib.annotations.datasets import load_dataset  # noqa: E402
from CephLandmarksLib.network.heatmaps import argmax_2d  # noqa: E402
from CephLandmarksLib.store.modelfile import atomic_write, load_model  # noqa: E402
from CephLandmarksLib.training.metrics import hits, reliability  # noqa: E402
from CephLandmarksLib.training.prepared import prepare, prepared_logits  # noqa: E402

ISBI = Path(__file__).resolve().parents[3] / "shared" / "data" / "isbi2015"
BIN, N_BINS = 0.01, 10000


class Summary:
    """Per map: histogram of (z - zmax), the true pixel's (z - zmax), and whether the argmax hits."""

    def __init__(self, logits, uv):
        n, self.L, h, w = logits.shape
        flat = logits.reshape(n, self.L, -1).float()
        zmax = flat.amax(-1)
        r = uv.round().long()
        self.inside = (r[..., 0] >= 0) & (r[..., 0] < w) & (r[..., 1] >= 0) & (r[..., 1] < h)
        at = (r[..., 1].clamp(0, h - 1) * w + r[..., 0].clamp(0, w - 1))[..., None]
        self.z_true = flat.gather(-1, at)[..., 0] - zmax
        self.hit = torch.as_tensor(hits(argmax_2d(logits).numpy(), uv.numpy()), dtype=torch.float32)
        idx = ((zmax[..., None] - flat) / BIN).round().long().clamp(max=N_BINS - 1)
        counts = torch.zeros(n, self.L, N_BINS).scatter_add_(-1, idx, torch.ones_like(flat))
        self.log_counts = counts.clamp(min=1e-30).log()
        self.centres = -torch.arange(N_BINS) * BIN

    def lse(self, log_t, sel):
        return torch.logsumexp(self.centres / log_t.exp().view(1, -1, 1) + self.log_counts[sel], -1)

    def confidence(self, log_t, sel):
        return (-self.lse(log_t, sel)).exp()

    def nll(self, log_t, sel):
        v = self.lse(log_t, sel) - self.z_true[sel] / log_t.exp().view(1, -1)
        return torch.where(self.inside[sel], v, torch.zeros_like(v))

    def bce(self, log_t, sel):
        c, h = self.confidence(log_t, sel).clamp(1e-6, 1 - 1e-6), self.hit[sel]
        return -(h * c.log() + (1 - h) * (1 - c).log())


def fit(s: Summary, sel, objective: str, shrink: float = 0.0):
    log_t = torch.zeros(s.L, requires_grad=True)
    log_0 = torch.zeros(1, requires_grad=True)
    opt = torch.optim.LBFGS([log_t, log_0], lr=0.5, max_iter=200, line_search_fn="strong_wolfe")
    shared, score = objective.endswith("_shared"), getattr(s, objective.split("_")[0])

    def closure():
        opt.zero_grad()
        loss = score(log_0.expand(s.L) if shared else log_t, sel).sum() + shrink * ((log_t - log_0) ** 2).sum()
        loss.backward()
        return loss

    opt.step(closure)
    return (log_0.expand(s.L) if shared else log_t).detach().clone()


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", required=True)
    ap.add_argument("--dataset", default=str(ISBI))
    ap.add_argument("--out", default="")
    a = ap.parse_args()
    m = load_model(a.model)
    by_id = {x.id: x for x in load_dataset(a.dataset, "train")}
    data = prepare([by_id[i] for i in m.info.training["holdout_ids"]], m.info.input_size)
    s = Summary(prepared_logits(m.net, data, "cpu"), data.uv)
    n = len(data.ids)
    folds = np.array_split(np.random.default_rng(0).permutation(n), 5)
    methods = [("none", 0), ("nll", 0), ("nll_shared", 0), ("bce", 0), ("bce_shared", 0),
               ("nll_shrink", 3), ("nll_shrink", 30), ("bce_shrink", 3), ("bce_shrink", 30)]
    print(f"{n} held-out images, {int(s.hit.sum())} hits of {s.hit.numel()} points\n")
    print("| objective | CV Brier | CV BCE | CV ECE (%) | T (fit on all): min / median / max |")
    print("|---|---|---|---|---|")
    results = {}
    for name, shrink in methods:
        conf = torch.zeros(n, s.L)
        for f in folds:
            train = torch.as_tensor(np.setdiff1d(np.arange(n), f))
            log_t = torch.zeros(s.L) if name == "none" else fit(s, train, name.replace("_shrink", ""), shrink)
            conf[f] = s.confidence(log_t, torch.as_tensor(f)).detach()
        c = conf.clamp(1e-6, 1 - 1e-6)
        t = torch.ones(s.L) if name == "none" else fit(s, torch.arange(n), name.replace("_shrink", ""), shrink).exp()
        key = f"{name} {shrink:g}" if "shrink" in name else name
        results[key] = dict(
            brier=float(((conf - s.hit) ** 2).mean()),
            bce=float(-(s.hit * c.log() + (1 - s.hit) * (1 - c).log()).mean()),
            ece=reliability(conf.numpy(), s.hit.numpy())["ece"],
            t_min=float(t.min()), t_median=float(t.median()), t_max=float(t.max()))
        r = results[key]
        print(f"| {key} | {r['brier']:.5f} | {r['bce']:.4f} | {r['ece']:.2f} | "
              f"{r['t_min']:.2f} / {r['t_median']:.2f} / {r['t_max']:.2f} |", flush=True)
    if a.out:
        atomic_write(a.out, lambda p: Path(p).write_text(json.dumps(
            {"model": m.info.name, "holdout_images": n, "results": results}, indent=1)))


if __name__ == "__main__":
    main()
