"""Cross-fitting for the two stages' calibration: K fold refiners, each trained without one K-th of
the refiner's training images, so that their maps on those images (which chose nothing) can join
the held-out images in fitting the flag threshold and the region masses (refiner_calibration.py).

Why: the 20 held-out images chose the refiner's epoch and its fine temperatures, and 20 images are
few; the "90 %" regions fitted on them alone held the truth 79 % of the time on ISBI Test1.  A fold
refiner trains on fewer images than the refiner it stands in for, so its maps err a little more and
the masses fitted on them lean large (as in CV+).  The first stage trained on all of these images:
their coarse points, which centre the crops, are closer to the truth than an unseen image's.

Files: `<work>/cross-fit/fold-k-of-K.refiner.safetensors` (checkpoints in `fold-k-of-K/`), each
recording `training.cross_fit` = {"fold", "folds", "out_of_fold_ids", "trained_on_ids"}.
"""

from dataclasses import replace
from pathlib import Path

import numpy as np

from ..errors import CephError
from ..store.refinerfile import LoadedRefiner, load_refiner
from .loop import read_checkpoint

FOLDS_FOLDER = "cross-fit"


def fold_ids(train_ids, folds: int, seed: int = 0) -> list[list]:
    """The training images split into `folds` disjoint folds of near-equal size (seeded, reproducible)."""
    ids = sorted(train_ids)
    if len(ids) < folds:
        raise CephError(f"--cross-fit {folds}: only {len(ids)} training images to split")
    order = np.random.default_rng(seed).permutation(len(ids))
    return [sorted(ids[i] for i in order[k::folds]) for k in range(folds)]


def fold_path(work: Path, fold: int, folds: int) -> Path:
    """The fold refiner file of fold `fold` (1-based) of `folds`."""
    return Path(work) / FOLDS_FOLDER / f"fold-{fold}-of-{folds}.refiner.safetensors"


def train_fold_refiners(cfg, work: Path, train_ids, patches, resume: bool, log, train_one, report) -> list[Path]:
    """Train (or, resuming, finish or keep) the K fold refiners; returns their files.  train_one(cfg_k,
    work_k, state_k, patches_k, extra, report_k) trains one (refiner_training._train); `patches` are the
    training patches in the order of train_ids."""
    folds = fold_ids(train_ids, cfg.cross_fit, cfg.seed)
    index = {i: n for n, i in enumerate(train_ids)}
    paths = []
    for k, out_of_fold in enumerate(folds, 1):
        out = fold_path(work, k, cfg.cross_fit)
        fold_work = out.parent / f"fold-{k}-of-{cfg.cross_fit}"
        trained_on = [i for i in train_ids if i not in set(out_of_fold)]
        extra = {"cross_fit": {"fold": k, "folds": cfg.cross_fit, "out_of_fold_ids": out_of_fold,
                               "trained_on_ids": trained_on}}
        paths.append(out)
        if resume and _finished(out, extra):
            log(f"fold {k} of {cfg.cross_fit}: kept {out}")
            continue
        fold_work.mkdir(parents=True, exist_ok=True)
        state = read_checkpoint(fold_work / "last.pt") if resume and (fold_work / "last.pt").is_file() else None
        log(f"fold {k} of {cfg.cross_fit}: training on {len(trained_on)} images, "
            f"{len(out_of_fold)} left out" + (f" (resuming after epoch {state['epoch']})" if state else ""))
        cfg_k = replace(cfg, out=str(out), work_dir=str(fold_work), cross_fit=0)
        lo, hi = (k - 1) / cfg.cross_fit, k / cfg.cross_fit
        train_one(cfg_k, fold_work, state, patches[[index[i] for i in trained_on]], extra,
                  lambda f, stage, lo=lo, hi=hi, k=k: report(lo + (hi - lo) * f, f"fold {k}: {stage}"))
    return paths


def _finished(path: Path, extra: dict) -> bool:
    """A fold refiner already written for these folds."""
    try:
        return load_refiner(path).info.training.get("cross_fit") == extra["cross_fit"]
    except CephError:
        return False


def load_fold_refiners(paths, refiner: LoadedRefiner, device="cpu") -> list[LoadedRefiner]:
    """The fold refiners of `refiner`, checked to stand in for it (same base model, crops and held-out
    images, folds that share no image); CephError, one line, otherwise."""
    folds = [load_refiner(p, device) for p in paths]
    seen = set()
    for f in folds:
        mine, theirs = refiner.info, f.info
        cf = theirs.training.get("cross_fit")
        if not cf:
            raise CephError(f"{f.path} is not a fold refiner (its training record has no cross_fit)")
        same = (mine.base_model.get("file_sha256") == theirs.base_model.get("file_sha256")
                and (mine.crop_size, mine.crop_mm_per_px) == (theirs.crop_size, theirs.crop_mm_per_px)
                and mine.training.get("holdout_ids") == theirs.training.get("holdout_ids"))
        if not same:
            raise CephError(f"{f.path} was not trained for {refiner.path} (another base model, crop or held-out set)")
        if seen & set(cf["out_of_fold_ids"]):
            raise CephError(f"{f.path}: its left-out images overlap another fold's")
        seen |= set(cf["out_of_fold_ids"])
    return folds


def default_fold_paths(refiner_path) -> list[Path]:
    """The fold refiners train-refiner --cross-fit left in the refiner's default work folder (OUT.work),
    when it holds one complete set; else []."""
    folder = Path(f"{refiner_path}.work") / FOLDS_FOLDER
    for k in range(10, 1, -1):
        paths = [fold_path(folder.parent, i, k) for i in range(1, k + 1)]
        if all(p.is_file() for p in paths):
            return paths
    return []
