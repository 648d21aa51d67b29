"""K-fold cross-validated training: K members, each trained from scratch on the other K-1 folds,
and the out-of-fold (OOF) logits of every training image from the member that never saw it.

`ceph-landmarks train --folds K --out NAME.json` writes (paths in the manifest are relative
to the manifest's folder):

    NAME.json                          the manifest (format "ceph-landmarks-folds/1"): K, the split
                                       seed and rule, the settings, and per fold its out-of-fold
                                       image ids, member file + SHA-256, OOF file + SHA-256,
                                       inner-holdout ids, best epoch, OOF MRE
    NAME.folds/NAME-foldI.safetensors  member I (I = 1..K), an ordinary model file
    NAME.folds/work/                   --work-dir (default): prepared_WxH.pt (all images, once),
                                       foldI/{last,best}.pt (checkpoints), foldI.oof.pt (OOF data)

Best-epoch selection.  Each fold keeps `holdout` images of its own training images (the other
K-1 folds) as an inner holdout: they choose the best epoch and give the member its provisional
temperatures; the member trains on the rest.  The fold's out-of-fold images are used for nothing
but the OOF logits, computed once from the finished member.  Choosing the epoch on them instead
would make the OOF data easier than unseen data (the reason the 20-image holdout wanted a lower
temperature than Test1), and the OOF data is what later fits the temperatures, the conformal
levels and the flag rule.  The price is `holdout` fewer training images per fold.

Seeds.  The split uses `seed` (datasets.split_folds); member I trains with seed + I (its own
initialisation and augmentation stream: an ensemble wants diverse members) and draws its inner
holdout with split_holdout(other folds' images, holdout, seed + I).

Resume.  Each fold checkpoints every epoch (training.train); every file is written atomically,
the manifest last, after the member and its OOF file.  `resume=True` skips the folds whose member
and OOF file exist with the SHA-256 the manifest records, continues an unfinished fold from its
`last.pt` (or starts it when it has none) and goes on with the rest.

OOF file (torch.save of plain tensors/lists/numbers; torch.load(..., weights_only=True)):
    format "ceph-landmarks-oof/1", fold (1-based), folds, member (file name), member_sha256,
    input_size [W, H], ids [n], logits (n, 19, H, W) float16: the member's eval-mode logits
    with the padding at -1e4 (prepared.prepared_logits), before any temperature;
    uv (n, 19, 2) true points in model pixels; landmarks_px (n, 19, 2) in image pixels;
    spacings_mm (n, 2); frames [n] of [image_size, model_size, scaled_size, offset, mirror_x].
`load_oof(manifest)` concatenates the K files in fold order into one OOFData, which
prepared.score_logits and prepared.radial_errors_mm accept in place of a PreparedSet.
"""

import json
import os
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import torch

from ..annotations.datasets import load_dataset, split_folds, split_holdout
from ..errors import CephError
from ..files import atomic_write, file_sha256, writable_folder
from ..network.heatmaps import decode_points, softmax_2d
from ..network.model import pick_device
from ..store.modelfile import load_model
from .loop import train
from .prepared import from_plain, prepare, prepared_logits, radial_errors_mm, subset, to_plain

MANIFEST_FORMAT = "ceph-landmarks-folds/1"
OOF_FORMAT = "ceph-landmarks-oof/1"
SPLIT_RULE = ("positions in the training split permuted by numpy.random.default_rng(seed); fold i (1-based) "
              "takes every K-th of them from the (i-1)-th; member i trains with seed + i and holds out "
              "`holdout` of its training images (split_holdout, seed + i) for best-epoch selection")
_NOT_SETTINGS = ("out", "work_dir", "device")  # may differ between a run and its resumption


@dataclass
class FoldPaths:
    manifest: Path
    members: Path  # NAME.folds
    work: Path

    def member(self, i: int) -> Path:
        return self.members / f"{self.manifest.stem}-fold{i}.safetensors"

    def fold_work(self, i: int) -> Path:
        return self.work / f"fold{i}"

    def oof(self, i: int) -> Path:
        return self.work / f"fold{i}.oof.pt"

    def rel(self, path: Path) -> str:
        return os.path.relpath(path, self.manifest.parent)


def fold_paths(out, work_dir: str = "") -> FoldPaths:
    manifest = Path(out)
    if manifest.suffix.lower() != ".json":
        raise CephError(f"with --folds, --out names the ensemble's manifest (NAME.json), not {out}")
    members = manifest.with_suffix(".folds")
    return FoldPaths(manifest, members, Path(work_dir) if work_dir else members / "work")


def preflight(paths: FoldPaths):
    """Before any fold trains: the manifest is not a folder, and its, the members' and the work
    folders can take files (files.writable_folder)."""
    if paths.manifest.is_dir():
        raise CephError(f"--out {paths.manifest} is a folder; name the ensemble's manifest (NAME.json)")
    if paths.manifest.exists() and not paths.manifest.is_file():
        raise CephError(f"--out {paths.manifest} is not a regular file")
    writable_folder(paths.manifest.parent, f"--out {paths.manifest}: the folder")
    writable_folder(paths.members, "the members' folder")
    writable_folder(paths.work, "--work-dir")


def _settings(cfg) -> dict:
    return json.loads(json.dumps({k: v for k, v in asdict(cfg).items() if k not in _NOT_SETTINGS}))


def read_manifest(path) -> dict:
    path = Path(path)
    try:
        m = json.loads(path.read_text())
    except FileNotFoundError:
        raise CephError(f"ensemble manifest not found: {path}") from None
    except (OSError, ValueError) as e:
        raise CephError(f"cannot read the ensemble manifest {path}: {e}") from None
    if not isinstance(m, dict) or m.get("format") != MANIFEST_FORMAT:
        raise CephError(f"{path} is not a ceph-landmarks fold manifest ({MANIFEST_FORMAT})")
    return m


def _write_manifest(path: Path, manifest: dict):
    atomic_write(path, lambda tmp: Path(tmp).write_text(json.dumps(manifest, indent=1, allow_nan=False) + "\n"))


def _fold_done(entry: dict, base: Path) -> bool:
    """The fold's member and OOF file exist with the SHA-256 the manifest records."""
    if entry.get("status") != "done":
        return False
    for key in ("file", "oof"):
        p = base / entry[key]
        if not p.is_file() or file_sha256(p) != entry[f"{key}_sha256" if key == "oof" else "sha256"]:
            return False
    return True


def train_folds(cfg, k: int, resume: bool = False, log=print, progress: bool = True, should_stop=None,
                report=None) -> Path:
    """Train a K-fold ensemble (see the module docstring); returns the manifest path.

    `cfg` is the single-model TrainConfig: `out` names the manifest (NAME.json), `holdout` is the
    inner holdout per fold, `seed` the split seed; every other setting applies to each member.
    """
    paths = fold_paths(cfg.out, cfg.work_dir)
    preflight(paths)
    if cfg.init_from:
        raise CephError("--folds trains every member from scratch; it cannot be combined with --init-from")
    samples = load_dataset(cfg.dataset, "train", cfg.ground_truth)
    ids = [s.id for s in samples]
    if len(set(ids)) != len(ids):
        raise CephError("the training images' ids (file names without suffix) are not unique")
    folds = split_folds(samples, k, cfg.seed)
    smallest = len(samples) - max(len(f) for f in folds)
    if not 0 < cfg.holdout < smallest:
        raise CephError(f"cannot hold out {cfg.holdout} of a fold's {smallest} training images for epoch "
                        f"selection (need 1 to {smallest - 1})")
    base = paths.manifest.parent
    settings = _settings(cfg)
    fold_ids = [[ids[j] for j in f] for f in folds]

    if resume:
        if not paths.manifest.is_file():
            raise CephError(f"nothing to resume: {paths.manifest} does not exist")
        manifest = read_manifest(paths.manifest)
        recorded = {"folds": manifest.get("k"), "seed": manifest.get("seed"), "settings": manifest.get("config"),
                    "images": [m.get("ids") for m in manifest.get("members", [])]}
        mine = {"folds": k, "seed": cfg.seed, "settings": settings, "images": fold_ids}
        differs = [name for name in mine if mine[name] != recorded[name]]
        if differs:
            raise CephError(f"cannot resume {paths.manifest}: it was started with other {', '.join(differs)}")
    else:
        if paths.manifest.is_file():
            try:
                done = sum(m.get("status") == "done" for m in read_manifest(paths.manifest).get("members", []))
            except CephError:
                done = 0
            if done:
                raise CephError(f"{paths.manifest} already holds {done} finished fold(s): pass --resume to "
                                "continue, or delete it to start over")
        for i in range(1, k + 1):  # stale checkpoints of an earlier run must not be resumed later
            for stale in (paths.fold_work(i) / "last.pt", paths.fold_work(i) / "best.pt", paths.oof(i)):
                stale.unlink(missing_ok=True)
        manifest = dict(
            format=MANIFEST_FORMAT, name=paths.manifest.stem, k=k, seed=cfg.seed, split_rule=SPLIT_RULE,
            selection=f"best epoch on {cfg.holdout} inner held-out images of each fold's training images; "
                      "the out-of-fold images only give the OOF logits",
            dataset=str(cfg.dataset), ground_truth=cfg.ground_truth, n_images=len(samples),
            work_dir=paths.rel(paths.work), config=settings,
            members=[dict(fold=i, status="pending", ids=f) for i, f in enumerate(fold_ids, 1)],
        )
        _write_manifest(paths.manifest, manifest)

    # Every image prepared once, shared by the folds.
    w, h = cfg.input_size
    cache = paths.work / f"prepared_{w}x{h}.pt"
    all_d = None
    try:
        c = torch.load(cache, weights_only=True)
        all_d = from_plain(c["all"])
        if all_d.ids != ids or not np.allclose(all_d.landmarks_px, [s.landmarks_px for s in samples]):
            all_d = None  # other images or another ground truth
    except Exception:  # absent, damaged or for other images: prepare again
        pass
    if all_d is None:
        all_d = prepare(samples, cfg.input_size, "preparing the training images")
        atomic_write(cache, lambda tmp: torch.save({"all": to_plain(all_d)}, tmp))
    device = pick_device(cfg.device)
    pos = {i: j for j, i in enumerate(ids)}

    for i, oof_pos in enumerate(folds, 1):
        entry = manifest["members"][i - 1]
        if resume and _fold_done(entry, base):
            log(f"fold {i}/{k}: finished already ({entry['file']}), skipped")
            continue
        if entry.get("status") != "pending":  # outputs missing or changed: train it again
            manifest["members"][i - 1] = entry = dict(fold=i, status="pending", ids=fold_ids[i - 1])
            _write_manifest(paths.manifest, manifest)
        in_fold = set(oof_pos)
        rest = [s for j, s in enumerate(samples) if j not in in_fold]
        train_s, hold_s = split_holdout(rest, cfg.holdout, cfg.seed + i)
        oof_s = [samples[j] for j in oof_pos]
        fold_cfg = replace(cfg, out=str(paths.member(i)), work_dir=str(paths.fold_work(i)), seed=cfg.seed + i)
        fold_resume = resume and (paths.fold_work(i) / "last.pt").is_file()
        log(f"fold {i}/{k}: {len(train_s)} training images, {len(hold_s)} held out for best-epoch selection, "
            f"{len(oof_s)} out of fold" + ("; resuming from its last checkpoint" if fold_resume else ""))
        t0 = time.time()
        member_path = train(
            fold_cfg, resume=fold_resume, log=log, progress=progress, should_stop=should_stop,
            report=report and (lambda f, stage, i=i: report((i - 1 + f) / k, f"fold {i}/{k}: {stage}")),
            split=(train_s, hold_s),
            prepared=(subset(all_d, [pos[s.id] for s in train_s]), subset(all_d, [pos[s.id] for s in hold_s])),
            extra={"fold": dict(fold=i, folds=k, split_seed=cfg.seed, ensemble=paths.manifest.name,
                                out_of_fold_ids=fold_ids[i - 1])},
        )

        # Out-of-fold logits from the finished member (as saved: what detect would load).
        member = load_model(member_path, device=str(device))
        oof_d = subset(all_d, oof_pos)
        logits = prepared_logits(member.net, oof_d, device)
        errors = radial_errors_mm(decode_points(softmax_2d(logits), member.info.refine_radius).numpy(), oof_d)
        plain = to_plain(oof_d)
        del plain["inputs"]
        payload = dict(format=OOF_FORMAT, fold=i, folds=k, member=paths.member(i).name, member_sha256=member.sha256,
                       input_size=[w, h], logits=logits.half(), **plain)
        atomic_write(paths.oof(i), lambda tmp, payload=payload: torch.save(payload, tmp))
        t = member.info.training
        entry.update(status="done", file=paths.rel(member_path), sha256=member.sha256, oof=paths.rel(paths.oof(i)),
                     oof_sha256=file_sha256(paths.oof(i)), inner_holdout_ids=[s.id for s in hold_s],
                     n_train=len(train_s), best_epoch=t.get("best_epoch"), epochs_run=t.get("epochs_run"),
                     train_seconds=round(sum(r.get("seconds", 0) for r in t.get("history", []))),
                     oof_mre_mm=round(float(errors.mean()), 4))
        _write_manifest(paths.manifest, manifest)
        log(f"fold {i}/{k}: done in {time.time() - t0:.0f} s, best epoch {t.get('best_epoch')}, "
            f"out-of-fold MRE {errors.mean():.3f} mm (uncalibrated) -> {entry['file']}")

    n = np.array([len(m["ids"]) for m in manifest["members"]])
    mre = np.array([m["oof_mre_mm"] for m in manifest["members"]])
    log(f"{k} folds done: out-of-fold MRE {float((n * mre).sum() / n.sum()):.3f} mm on {n.sum()} images "
        f"(uncalibrated) -> {paths.manifest}")
    return paths.manifest


@dataclass
class OOFData:
    """Out-of-fold data of all folds, in fold order; duck-compatible with prepared.PreparedSet for
    scoring (prepared.score_logits, prepared.radial_errors_mm): ids, uv, frames, spacings_mm, landmarks_px."""

    ids: list
    fold: np.ndarray  # (N,) 1-based fold (= member) that did not train on the image
    logits: torch.Tensor  # (N, L, H, W) float16, raw (no temperature), padding at -1e4
    uv: torch.Tensor  # (N, L, 2) true points in model pixels
    frames: list
    spacings_mm: np.ndarray  # (N, 2)
    landmarks_px: np.ndarray  # (N, L, 2)
    member_sha256: dict  # fold -> SHA-256 of the member that produced its logits


def read_oof(path) -> OOFData:
    """One fold's OOF file."""
    try:
        c = torch.load(path, weights_only=True)
        if c.get("format") != OOF_FORMAT:
            raise ValueError(f"not {OOF_FORMAT}")
        d = from_plain({**c, "inputs": None})
    except FileNotFoundError:
        raise CephError(f"out-of-fold file not found: {path}") from None
    except Exception as e:
        raise CephError(f"cannot read the out-of-fold file {path}: {e}") from None
    n = len(d.ids)
    return OOFData(d.ids, np.full(n, int(c["fold"])), c["logits"], d.uv, d.frames, np.asarray(d.spacings_mm),
                   np.asarray(d.landmarks_px), {int(c["fold"]): c["member_sha256"]})


def concat_oof(parts: list) -> OOFData:
    return OOFData(
        [i for p in parts for i in p.ids], np.concatenate([p.fold for p in parts]),
        torch.cat([p.logits for p in parts]), torch.cat([p.uv for p in parts]), [f for p in parts for f in p.frames],
        np.concatenate([p.spacings_mm for p in parts]), np.concatenate([p.landmarks_px for p in parts]),
        {k: v for p in parts for k, v in p.member_sha256.items()},
    )


def load_oof(manifest_path, verify: bool = True) -> OOFData:
    """All K folds' OOF data of a finished ensemble, checked against its manifest (ids, member
    SHA-256, and with `verify` the OOF files' SHA-256)."""
    manifest_path = Path(manifest_path)
    m = read_manifest(manifest_path)
    parts = []
    for e in m["members"]:
        if e.get("status") != "done":
            raise CephError(f"fold {e['fold']} of {m['k']} in {manifest_path} is unfinished (train --folds --resume)")
        path = manifest_path.parent / e["oof"]
        if verify and path.is_file() and file_sha256(path) != e["oof_sha256"]:
            raise CephError(f"{path} does not match the SHA-256 in {manifest_path}")
        part = read_oof(path)
        if part.ids != e["ids"] or part.member_sha256.get(e["fold"]) != e["sha256"]:
            raise CephError(f"{path} is not the out-of-fold data of fold {e['fold']} in {manifest_path}")
        parts.append(part)
    return concat_oof(parts)
