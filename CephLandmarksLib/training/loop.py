"""Training: softmax-over-the-map cross-entropy, Adam with warm-up and cosine decay.

Every epoch writes `last.pt` (and `best.pt` when the validation MRE improves) into the
work folder; `resume=True` continues from `last.pt`.  Randomness is drawn from a
generator seeded by (seed, epoch), so a resumed run repeats the uninterrupted one.
"""

import contextlib
import json
import math
import platform
import time
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from ..annotations.datasets import load_dataset, split_holdout
from ..errors import CephError
from ..files import writable_folder
from ..network.heatmaps import decode_points, heatmap_nll, softmax_2d
from ..network.model import build_model
from ..store.modelfile import ModelInfo, atomic_write, load_model, save_model
from ..store.modelmeta import INPUT_SIZE_MULTIPLE, INPUT_SIZE_RANGE
from ..store.registry import read_model_info
from . import distributed
from .augment import AugmentSettings, augment_batch
from .calibration import calibrate_loaded, calibrate_regions
from .prepared import PreparedSet, from_plain, prepare, prepared_logits, radial_errors_mm, to_plain


@dataclass
class TrainConfig:
    dataset: str
    out: str  # the model file to write
    input_size: tuple[int, int] = (320, 416)  # (width, height), multiples of 32
    epochs: int = 40
    batch_size: int = 4
    lr: float = 1e-3
    weight_decay: float = 1e-5
    holdout: int = 20  # training images held out for validation and calibration
    seed: int = 0
    device: str = "auto"
    bf16: bool = True  # bfloat16 autocast for the encoder/decoder (the head and loss stay float32)
    imagenet: bool = False
    ground_truth: str = "mean"
    work_dir: str = ""  # checkpoints; default: OUT.work/
    augment: dict = field(default_factory=lambda: asdict(AugmentSettings()))
    init_from: str = ""  # a model file to fine-tune (fresh optimiser and schedule); default: random/ImageNet


def _load_cache(path, train_s, hold_s):
    """The prepared (train, holdout) sets from `path`, or None if absent, unreadable or for other images."""
    try:
        c = torch.load(path, weights_only=True)
        train_d, hold_d = from_plain(c["train"]), from_plain(c["hold"])
    except Exception:  # absent, an older format, or damaged: prepare again
        return None
    if (train_d.ids, hold_d.ids) != ([s.id for s in train_s], [s.id for s in hold_s]):
        return None
    return train_d, hold_d


def lr_factor(step, total, warmup):
    """The learning rate's share at a step: linear warm-up over `warmup` steps, then cosine decay to 1 %."""
    if step < warmup:
        return (step + 1) / warmup
    t = (step - warmup) / max(1, total - warmup)
    return 0.01 + 0.99 * 0.5 * (1 + math.cos(math.pi * min(1.0, t)))


def _autocast(device, enabled):
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=enabled and device.type in ("cpu", "cuda"))


def forward(net, x, device, bf16):
    """Logits; under bf16 autocast the head and the softmax stay float32 (peaky maps need it)."""
    with _autocast(device, bf16):
        y = net.features(x)
    return net.head(y.float())


def validate(net, data: PreparedSet, device, refine_radius=1):
    logits = prepared_logits(net, data, device)
    loss = heatmap_nll(logits, data.uv).item()
    errors = radial_errors_mm(decode_points(softmax_2d(logits), refine_radius).numpy(), data)
    return loss, float(errors.mean())


def _save_checkpoint(path, state):
    atomic_write(path, lambda tmp: torch.save(state, tmp))


CHECKPOINT_KEYS = {"model": dict, "optimizer": dict, "epoch": int, "best_mre_mm": float, "history": list,
                   "config": dict}


def read_checkpoint(path, device="cpu") -> dict:
    """A checkpoint this tool wrote (torch.load with weights_only=True: no code runs); CephError, one
    line, for a foreign, corrupt or truncated file."""
    try:
        with warnings.catch_warnings():  # torch warns about foreign pickle protocols: the one line below says it
            warnings.simplefilter("ignore")
            state = torch.load(path, map_location=device, weights_only=True)
    except FileNotFoundError:
        raise CephError(f"checkpoint not found: {path}") from None
    except Exception as e:  # UnpicklingError, RuntimeError (not a zip), EOFError, ...
        reason = str(e).strip().splitlines()[0][:120] if str(e).strip() else type(e).__name__
        raise CephError(f"{path} is not a readable training checkpoint of this tool ({reason})") from None
    if not isinstance(state, dict):
        raise CephError(f"{path} is not a training checkpoint of this tool (it holds a {type(state).__name__})")
    for key, kind in CHECKPOINT_KEYS.items():
        value = state.get(key)
        if not isinstance(value, kind) and not (kind is float and isinstance(value, int)) or isinstance(value, bool):
            raise CephError(f"{path} is not a training checkpoint of this tool ({key!r} is missing or not a "
                            f"{kind.__name__})")
    return state


def check_output_file(out, option="--out") -> Path:
    """The model file a run will write: not a folder, in a writable folder, and not an existing
    file other than a model (never overwrite, say, an image or the dataset's CSV)."""
    out = Path(out)
    if out.is_dir():
        raise CephError(f"{option} {out} is a folder; name the file to write (e.g. {out / 'model.safetensors'})")
    if out.exists():
        try:
            read_model_info(out)
        except CephError:
            raise CephError(f"{option} {out} exists and is not a model file; it would be overwritten: choose "
                            "another name") from None
    writable_folder(out.parent, f"{option} {out}: the folder")
    return out


def check_config(cfg: "TrainConfig"):
    """Refuse settings no training can run with, before anything is read or written."""
    w, h = cfg.input_size
    lo, hi = INPUT_SIZE_RANGE
    if not all(lo <= v <= hi and v % INPUT_SIZE_MULTIPLE == 0 for v in (w, h)):
        raise CephError(f"input size must be multiples of {INPUT_SIZE_MULTIPLE} from {lo} to {hi}, got {w} x {h}")
    if cfg.epochs < 1 or cfg.batch_size < 1 or not (math.isfinite(cfg.lr) and cfg.lr > 0):
        raise CephError(f"epochs and batch size must be at least 1 and the learning rate positive, got "
                        f"{cfg.epochs}, {cfg.batch_size}, {cfg.lr}")


@contextlib.contextmanager
def _work_folder(work: Path):
    """Create the work folder; if the run fails and this run created it, remove it again when empty
    (a failed train leaves no empty OUT.work/)."""
    created = not work.exists()
    work.mkdir(parents=True, exist_ok=True)
    try:
        yield work
    except BaseException:
        if created:
            with contextlib.suppress(OSError):
                work.rmdir()  # only if empty: checkpoints of finished epochs are kept for --resume
        raise


def train(cfg: TrainConfig, resume: bool = False, log=print, progress: bool = True, should_stop=None, *,
          split=None, prepared=None, extra: dict | None = None, report=None) -> Path:
    """Train a model; returns the path of the model file written (calibrated on the holdout).

    progress=True draws a bar over the whole run (ETA, loss, learning rate) when stderr is a terminal;
    report(fraction, stage), when given, is told after every step (`train --progress`: Slicer reads it).

    `split` = (training samples, held-out samples) replaces loading `cfg.dataset` and taking
    `cfg.holdout` images out of it; `prepared` = their PreparedSets (skips the cache); `extra` is
    merged into the model file's training record.  The cross-validated folds (folds.py) use them.
    """
    w, h = cfg.input_size
    check_config(cfg)
    check_output_file(cfg.out)
    work = writable_folder(cfg.work_dir or f"{cfg.out}.work", "--work-dir")
    procs = distributed.from_environment()  # several processes under torchrun (distributed.py)
    distributed.local_batch_size(procs, cfg.batch_size)
    device = distributed.device_for(procs, cfg.device)
    distributed.start(procs, device)
    state = None
    if resume:
        ckpt = work / "last.pt"
        if not ckpt.is_file():
            raise CephError(f"nothing to resume: {ckpt} does not exist")
        state = read_checkpoint(ckpt, device)
        _check_resumable(ckpt, state, cfg)
    init = load_model(cfg.init_from) if cfg.init_from else None
    if split is not None:
        train_s, hold_s = split
    else:
        train_s, hold_s = _split(load_dataset(cfg.dataset, "train", cfg.ground_truth), cfg, init, log)

    with _work_folder(work):
        if not procs.main:  # process 0 alone logs and shows progress
            log, progress, report = (lambda m: None), False, None
        return _train(cfg, work, device, state, init, train_s, hold_s, log, progress, should_stop, prepared, extra,
                      report or (lambda fraction, stage: None), procs)


def _check_resumable(ckpt, state, cfg):
    saved = {k: v for k, v in state["config"].items() if k not in ("epochs", "device", "out", "work_dir")}
    mine = {k: v for k, v in asdict(cfg).items() if k in saved}
    # Augmentation settings added after a checkpoint was written keep their defaults.
    saved_aug = saved.get("augment") if isinstance(saved.get("augment"), dict) else {}
    mine["augment"] = {k: v for k, v in mine.get("augment", {}).items() if k in saved_aug}
    try:
        same = json.loads(json.dumps(mine)) == json.loads(json.dumps(saved))
    except (TypeError, ValueError):
        same = False
    if not same:
        raise CephError(f"cannot resume {ckpt}: it was trained with other settings")


def _train(cfg, work, device, state, init, train_s, hold_s, log, progress, should_stop, prepared, extra,
           report, procs) -> Path:
    """The training proper (train() has checked everything it can beforehand)."""
    from tqdm import tqdm

    w, h = cfg.input_size
    torch.manual_seed(cfg.seed)
    net = build_model(imagenet=cfg.imagenet).to(device, memory_format=torch.channels_last)
    opt = torch.optim.Adam(net.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    start_epoch, best, history = 0, math.inf, []
    if state is not None:
        try:
            net.load_state_dict(state["model"])
            opt.load_state_dict(state["optimizer"])
        except (RuntimeError, ValueError, KeyError, TypeError) as e:
            raise CephError(f"{work / 'last.pt'} does not fit this network ({str(e).strip().splitlines()[0][:120]})") \
                from None
        start_epoch, best, history = state["epoch"], state["best_mre_mm"], state["history"]
        log(f"resuming after epoch {start_epoch} (best validation MRE {best:.3f} mm)")
    if init is not None and state is None:
        net.load_state_dict(init.net.state_dict())
        log(f"starting from {cfg.init_from} ({init.info.name})")

    train_d, hold_d = prepared if prepared is not None else _prepared(cfg, work, train_s, hold_s, procs)
    log(f"{len(train_d.ids)} training and {len(hold_d.ids)} held-out images at {w} x {h} on {device}"
        + (f" and {procs.world - 1} more processes (effective batch {cfg.batch_size})" if procs.distributed else ""))

    model = distributed.wrap(net, procs, device, cfg.bf16, forward)  # x -> logits; DDP on several processes
    batch = distributed.local_batch_size(procs, cfg.batch_size)
    steps_per_epoch = math.ceil(math.ceil(len(train_d.ids) / procs.world) / batch)
    total_steps = steps_per_epoch * cfg.epochs
    aug = AugmentSettings(**{k: tuple(v) if isinstance(v, list) else v for k, v in cfg.augment.items()})
    t_start = time.time()
    bar = tqdm(total=total_steps, initial=start_epoch * steps_per_epoch, disable=None if progress else True,
               leave=False, dynamic_ncols=True)  # disable=None: drawn on a terminal only
    for epoch in range(start_epoch, cfg.epochs):
        if procs.distributed:  # this process's share of each batch; its own augmentation
            order = torch.tensor(distributed.epoch_indices(procs, len(train_d.ids), cfg.seed, epoch))
            gen = distributed.augmentation_generator(procs, cfg.seed, epoch)
        else:
            gen = torch.Generator().manual_seed(cfg.seed * distributed.SAMPLER_SEED_STRIDE + epoch)
            order = torch.randperm(len(train_d.ids), generator=gen)
        net.train()
        bar.set_description_str(f"epoch {epoch + 1}/{cfg.epochs}")
        losses, t0 = [], time.time()
        for step in range(steps_per_epoch):
            lr = cfg.lr * lr_factor(epoch * steps_per_epoch + step, total_steps, steps_per_epoch)
            for group in opt.param_groups:
                group["lr"] = lr
            idx = order[step * batch : (step + 1) * batch]
            x, uv = augment_batch(train_d.inputs[idx].float(), train_d.uv[idx], gen, aug)
            x = x.to(device).contiguous(memory_format=torch.channels_last)
            loss = heatmap_nll(model(x), uv.to(device))
            batch_loss = distributed.mean_over_processes(loss, procs)  # the global batch's: every process agrees
            if not torch.isfinite(batch_loss):
                raise CephError(f"training diverged in epoch {epoch + 1} (the loss is not finite); try a lower --lr")
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            losses.append(batch_loss.item())
            bar.set_postfix(loss=f"{np.mean(losses[-20:]):.3f}", lr=f"{lr:.1e}", refresh=False)
            bar.update()
            report((epoch * steps_per_epoch + step + 1) / total_steps, f"training: epoch {epoch + 1}/{cfg.epochs}")
            if should_stop is not None and should_stop():
                raise CephError("training cancelled")
        val_loss, val_mre = validate(net, hold_d, device)
        if not (math.isfinite(val_loss) and math.isfinite(val_mre)):
            raise CephError(f"training diverged in epoch {epoch + 1} (the validation error is not finite); "
                            "try a lower --lr")
        rec = dict(epoch=epoch + 1, train_loss=float(np.mean(losses)), val_loss=val_loss, val_mre_mm=val_mre,
                   lr=lr, seconds=time.time() - t0)
        history.append(rec)
        log(json.dumps(rec, allow_nan=False))
        if not procs.main:
            continue
        state = dict(model=net.state_dict(), optimizer=opt.state_dict(), epoch=epoch + 1,
                     best_mre_mm=min(best, val_mre), history=history, config=asdict(cfg))
        if val_mre < best:
            best = val_mre
            _save_checkpoint(work / "best.pt", state)
        _save_checkpoint(work / "last.pt", state)
    bar.close()
    if not procs.main:
        return Path(cfg.out)
    report(1.0, "calibrating on the held-out images")
    return finalize(cfg, work, hold_s, hold_d, history, time.time() - t_start, log, init, extra)


def _prepared(cfg, work, train_s, hold_s, procs):
    """The prepared (train, holdout) sets, from the work folder's cache when it holds these images;
    process 0 prepares and writes it, the others then read it."""
    w, h = cfg.input_size
    cache = work / f"prepared_{w}x{h}.pt"
    cached = _load_cache(cache, train_s, hold_s) if procs.main else None
    if procs.main and cached is None:
        cached = (prepare(train_s, cfg.input_size, "preparing training images"),
                  prepare(hold_s, cfg.input_size, "preparing held-out images"))
        atomic_write(cache, lambda tmp: torch.save({"train": to_plain(cached[0]), "hold": to_plain(cached[1])}, tmp))
    distributed.barrier(procs)
    return cached if cached is not None else _load_cache(cache, train_s, hold_s)


def _split(samples, cfg: TrainConfig, init, log):
    """(train, holdout).  Fine-tuning a model keeps the model's own holdout when the dataset has it,
    so the temperatures and threshold are still fitted on images no version of the network has seen."""
    held_ids = (init.info.training or {}).get("holdout_ids") if init is not None else None
    ids = {s.id for s in samples}
    if held_ids and set(held_ids) <= ids and len(held_ids) < len(samples):
        if len(held_ids) != cfg.holdout:
            log(f"keeping the {len(held_ids)} held-out images of {cfg.init_from} (not --holdout {cfg.holdout})")
        held = set(held_ids)
        return [s for s in samples if s.id not in held], [s for s in samples if s.id in held]
    return split_holdout(samples, cfg.holdout, cfg.seed)


def training_mm_per_px(data: PreparedSet) -> float:
    """The model's own scale: median millimetres per model pixel of the (fit-framed) images."""
    mm = [float(np.mean(f.model_pixel_mm(sp))) for f, sp in zip(data.frames, data.spacings_mm, strict=True)]
    return round(float(np.median(mm)), 6)


def _init_record(init) -> dict:
    """Provenance of the model (a LoadedModel) a fine-tuning started from."""
    t = init.info.training or {}
    return {"name": init.info.name, "file_sha256": init.sha256, "epochs_run": t.get("epochs_run"),
            "train_seconds": round(sum(r.get("seconds", 0) for r in t.get("history", []))),
            "config": t.get("config"), "init_model": t.get("init_model")}


def finalize(cfg, work, hold_s, hold_d, history, seconds, log, init=None, extra=None) -> Path:
    """Best checkpoint -> model file, calibrated (temperatures, ERE threshold, region masses) on the holdout."""
    if not (work / "best.pt").is_file():
        raise CephError(f"no epoch gave a finite validation error ({work / 'best.pt'} was never written); "
                        "try a lower --lr")
    state = read_checkpoint(work / "best.pt")
    net = build_model()
    net.load_state_dict(state["model"])
    info = ModelInfo(
        name=Path(cfg.out).stem, input_size=tuple(cfg.input_size), model_mm_per_px=training_mm_per_px(hold_d),
        reference_uv=np.round(hold_d.uv.double().mean(0).numpy(), 2).tolist(),
        training=dict(
            config={k: v for k, v in asdict(cfg).items() if k not in ("out", "work_dir")},
            holdout_ids=list(hold_d.ids), best_epoch=int(np.argmin([r["val_mre_mm"] for r in history]) + 1)
            if history else state["epoch"], epochs_run=state["epoch"], history=history,
            hardware=f"{platform.processor() or platform.machine()}, torch {torch.__version__}",
            train_seconds_this_run=round(seconds),
            **({"init_model": _init_record(init)} if init is not None else {}),
            **(extra or {}),
        ),
    )
    save_model(cfg.out, net, info)
    loaded = load_model(cfg.out)
    calibrate_loaded(loaded, hold_s, log=log, prepared=hold_d)
    calibrate_regions(cfg.out, hold_s, log=log)
    return Path(cfg.out)
