"""Training the refiner (the second stage) behind a base model: `ceph-landmarks train-refiner`.

The base model's own held-out images (its `holdout_ids`; else `holdout` images split off as
`train` does) are never trained on: the base model's errors there give the training crops'
jitter (refiner_data.Jitter), and its real predictions there centre the validation crops, so
each epoch's validation MRE is the two-stage error on images neither stage saw, beside the
first stage's own.  The fine maps' temperatures are fitted there at the end.

Every epoch writes `last.pt` (and `best.pt` when the validation MRE improves, over the held-out
points whose truth lies in their crop) to the work folder; `resume=True` continues from
`last.pt`, with the same random draws as an uninterrupted run.
"""

import json
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from ..annotations.datasets import load_dataset, split_holdout
from ..errors import CephError
from ..files import atomic_write, writable_folder
from ..network.heatmaps import heatmap_nll
from ..network.refiner import CHANNELS, RefinerNet, n_parameters
from ..store.modelfile import load_model
from ..store.refinerfile import RefinerInfo, save_refiner
from .augment import AugmentSettings
from .loop import lr_factor, read_checkpoint
from .refiner_calibration import calibrate_refiner
from .refiner_data import Jitter, prepare_patches, training_batch
from .refiner_holdout import HoldoutSet, fit_temperatures, prepare_holdout


@dataclass
class RefinerConfig:
    model: str  # the base model file
    dataset: str
    out: str  # the refiner file to write
    epochs: int = 30
    batch_size: int = 32
    lr: float = 2e-3
    weight_decay: float = 1e-5
    crop_size: int = 128
    crop_mm_per_px: float = 0.125
    patch_size: int = 288  # the training patches (crop pixels): room for jitter and rotation
    channels: tuple = CHANNELS
    holdout: int = 20  # only when the base model records no held-out images
    seed: int = 0
    threads: int = 0  # torch threads; 0: torch's default
    ground_truth: str = "mean"
    work_dir: str = ""
    augment: dict = field(default_factory=lambda: asdict(AugmentSettings(window_p=0.3, blur_p=0.3, jpeg_p=0.2)))
    jitter: dict = field(default_factory=dict)  # Jitter settings other than the errors


CHECKPOINT_VERSION = 1


def split_for(base, samples, cfg: RefinerConfig):
    """(train, held-out): the base model's own held-out images when the dataset has them all."""
    held_ids = (base.info.training or {}).get("holdout_ids") or []
    ids = {s.id for s in samples}
    if held_ids and set(held_ids) <= ids and len(held_ids) < len(samples):
        held = set(held_ids)
        return [s for s in samples if s.id not in held], [s for s in samples if s.id in held], "base model's holdout"
    train_s, hold_s = split_holdout(samples, cfg.holdout, cfg.seed)
    return train_s, hold_s, f"{cfg.holdout} images split off (seed {cfg.seed}): the base model may have seen them"


def check_refiner_config(cfg: RefinerConfig):
    if cfg.epochs < 1 or cfg.batch_size < 2 or not (math.isfinite(cfg.lr) and cfg.lr > 0):
        raise CephError(f"epochs must be at least 1, the batch size at least 2 and the learning rate positive, got "
                        f"{cfg.epochs}, {cfg.batch_size}, {cfg.lr}")
    if cfg.crop_size % 16 or not 16 <= cfg.crop_size <= cfg.patch_size:
        raise CephError(f"the crop size must be a multiple of 16, at most the patch size, got {cfg.crop_size}")
    out = Path(cfg.out)
    if out.is_dir():
        raise CephError(f"--out {out} is a folder; name the file to write (e.g. {out / 'refiner.safetensors'})")
    writable_folder(out.parent, f"--out {out}: the folder")


def _cached(path: Path, key: dict, build):
    """build() once; its result kept at `path` for this `key` (settings and image ids)."""
    try:
        c = torch.load(path, weights_only=True)
        if c.get("key") == json.loads(json.dumps(key)):
            return c["value"]
    except Exception:  # absent, other settings or damaged: build again
        pass
    value = build()
    atomic_write(path, lambda tmp: torch.save({"key": json.loads(json.dumps(key)), "value": value}, tmp))
    return value


def train_refiner(cfg: RefinerConfig, resume: bool = False, log=print, should_stop=None, progress=None) -> Path:
    """Train, calibrate and write the refiner file; returns its path.  progress(fraction, stage) is told
    how far it is; the two-stage flag threshold and region masses are fitted last (refiner_calibration.py)."""
    check_refiner_config(cfg)
    threads = torch.get_num_threads()
    if cfg.threads > 0:
        torch.set_num_threads(cfg.threads)
    try:
        report = progress or (lambda fraction, stage: None)
        path = _train_refiner(cfg, resume, log, should_stop, report)
        report(0.95, "calibrating the two stages on the held-out images")
        calibrate_refiner(cfg.model, path, cfg.dataset, cfg.ground_truth, log=log)
        report(1.0, "done")
        return path
    finally:
        torch.set_num_threads(threads)


def _train_refiner(cfg, resume, log, should_stop, report) -> Path:
    base = load_model(cfg.model)
    work = writable_folder(cfg.work_dir or f"{cfg.out}.work", "--work-dir")
    state = None
    if resume:
        if not (work / "last.pt").is_file():
            raise CephError(f"nothing to resume: {work / 'last.pt'} does not exist")
        state = read_checkpoint(work / "last.pt")
        saved = {k: v for k, v in state["config"].items() if k not in ("epochs", "out", "work_dir", "threads")}
        mine = {k: v for k, v in json.loads(json.dumps(asdict(cfg))).items() if k in saved}
        if mine != json.loads(json.dumps(saved)):
            raise CephError(f"cannot resume {work / 'last.pt'}: it was trained with other settings")
    report(0.0, "preparing the training crops and the held-out images")
    train_s, hold_s, held_how = split_for(base, load_dataset(cfg.dataset, "train", cfg.ground_truth), cfg)
    log(f"{len(train_s)} training images; {len(hold_s)} held out ({held_how})")

    key = {"ids": [s.id for s in train_s], "patch": cfg.patch_size, "mm": cfg.crop_mm_per_px, "gt": cfg.ground_truth}
    patches = _cached(work / "patches.pt", key, lambda: prepare_patches(train_s, cfg.patch_size, cfg.crop_mm_per_px))
    hkey = {"ids": [s.id for s in hold_s], "model": base.sha256, "crop": cfg.crop_size, "mm": cfg.crop_mm_per_px,
            "gt": cfg.ground_truth}
    hold = HoldoutSet.from_plain(_cached(work / "holdout.pt", hkey,
                                         lambda: prepare_holdout(base, hold_s, cfg.crop_size, cfg.crop_mm_per_px)
                                         .to_plain()))
    jitter = Jitter(hold.errors_mm, **cfg.jitter)
    log(f"first stage on the held-out images: MRE {hold.coarse_mre_mm:.3f} mm; jitter from its errors per landmark")
    return _train(cfg, base, work, state, patches, hold, jitter, held_how, log, should_stop, report)


def selection_score(rec: dict) -> float:
    """What picks the best epoch: the fine points' MRE over the held-out points whose truth lies in
    their crop (the points the second stage can fix; the others' error is the crop's offset, the
    same every epoch).  When no truth lies in its crop the validation cannot judge the refiner, and
    -inf makes every epoch the best, so the last one is kept."""
    inside = rec.get("val_inside_mre_mm", rec["val_mre_mm"])
    return -math.inf if inside is None else float(inside)


def best_epoch(history: list) -> int:
    """The epoch best.pt holds (ties go to the later epoch, as in training)."""
    scores = [selection_score(r) for r in history]
    return max(i for i, s in enumerate(scores) if s == min(scores)) + 1


def _save(path, state):
    atomic_write(path, lambda tmp: torch.save(state, tmp))


def _train(cfg, base, work, state, patches, hold, jitter, held_how, log, should_stop, report) -> Path:
    torch.manual_seed(cfg.seed)
    n_landmarks = patches.shape[1]
    net = RefinerNet(n_landmarks, tuple(cfg.channels))
    opt = torch.optim.AdamW(net.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    start, best, history = 0, math.inf, []
    if state is not None:
        net.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        start, best, history = state["epoch"], state["best_mre_mm"], state["history"]
        log(f"resuming after epoch {start} (best validation MRE {best:.3f} mm)")
    pairs = torch.cartesian_prod(torch.arange(patches.shape[0]), torch.arange(n_landmarks))
    steps = math.ceil(len(pairs) / cfg.batch_size)
    total = steps * cfg.epochs
    aug = AugmentSettings(**{k: tuple(v) if isinstance(v, list) else v for k, v in cfg.augment.items()})
    t_start = time.time()
    for epoch in range(start, cfg.epochs):
        gen = torch.Generator().manual_seed(cfg.seed * 100003 + epoch)
        order = pairs[torch.randperm(len(pairs), generator=gen)]
        net.train()
        losses, t0 = [], time.time()
        for step in range(steps):
            for g in opt.param_groups:
                g["lr"] = cfg.lr * lr_factor(epoch * steps + step, total, steps)
            x, lm, uv = training_batch(patches, order[step * cfg.batch_size:(step + 1) * cfg.batch_size], jitter,
                                       cfg.crop_mm_per_px, cfg.crop_size, gen, aug)
            loss = heatmap_nll(net(x, lm)[:, None], uv[:, None])
            if not torch.isfinite(loss):
                raise CephError(f"training diverged in epoch {epoch + 1} (the loss is not finite); try a lower --lr")
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            losses.append(loss.item())
            report(0.05 + 0.9 * (epoch * steps + step + 1) / total, f"training: epoch {epoch + 1} of {cfg.epochs}")
            if should_stop is not None and should_stop():
                raise CephError("training cancelled")
        val = hold.evaluate(net)
        rec = dict(epoch=epoch + 1, train_loss=float(np.mean(losses)), val_loss=val["nll"],
                   val_mre_mm=val["fine_mre_mm"], val_inside_mre_mm=val["fine_mre_inside_mm"],
                   coarse_mre_mm=hold.coarse_mre_mm, seconds=round(time.time() - t0, 1))
        history.append(rec)
        log(json.dumps(rec))
        score = selection_score(rec)
        state = dict(model=net.state_dict(), optimizer=opt.state_dict(), epoch=epoch + 1,
                     best_mre_mm=min(best, score), history=history,
                     config=json.loads(json.dumps(asdict(cfg))), version=CHECKPOINT_VERSION)
        if score <= best:
            best = score
            _save(work / "best.pt", state)
        _save(work / "last.pt", state)
    return _finalize(cfg, base, work, hold, jitter, held_how, history, time.time() - t_start, log)


def _finalize(cfg, base, work, hold, jitter, held_how, history, seconds, log) -> Path:
    """best.pt -> the refiner file, its fine temperatures fitted on the held-out crops."""
    state = read_checkpoint(work / "best.pt")
    net = RefinerNet(hold.crops.shape[1], tuple(cfg.channels))
    net.load_state_dict(state["model"])
    net.eval()
    temps = fit_temperatures(net, hold)
    result = hold.evaluate(net, torch.as_tensor(temps, dtype=torch.float32), combined=True)
    log(f"held-out: first stage {hold.coarse_mre_mm:.3f} mm, two stages {result['combined_mre_mm']:.3f} mm "
        f"({result['refined_percent']:.1f} % of points refined), fine everywhere {result['fine_mre_mm']:.3f} mm")
    info = RefinerInfo(
        landmark_abbreviations=list(base.info.landmark_abbreviations or base.info.landmark_names),
        crop_size=cfg.crop_size, crop_mm_per_px=cfg.crop_mm_per_px, channels=list(cfg.channels),
        temperatures=[round(float(t), 5) for t in temps],
        base_model={"name": base.info.name, "file_sha256": base.sha256},
        training={"config": {k: v for k, v in json.loads(json.dumps(asdict(cfg))).items() if k not in ("out",
                                                                                                       "work_dir")},
                  "holdout_ids": list(hold.ids), "holdout": held_how, "jitter": jitter.summary(),
                  "best_epoch": best_epoch(history), "epochs_run": state["epoch"],
                  "history": history, "train_seconds_this_run": round(seconds), "parameters": n_parameters(net),
                  "holdout_result": result},
    )
    save_refiner(cfg.out, net, info)
    return Path(cfg.out)

