"""Training across processes: `torchrun --nproc_per_node 2 -m CephLandmarksLib train` (gloo on the CPU)
learns what one process learns with the same global batch.

Augmentation off (`--augment none`), float32 (`--no-bf16`), one thread a process.  BatchNorm runs on
the global batch in both (GlobalBatchNorm2d across the two processes), and the two shares of each
step are the single process's batch (DistributedSampler seeded like the single-process order), so
the runs differ only in the order of floating-point sums.  Adam divides each gradient by its own
running size, so rounding differences in near-zero gradients become steps of up to the learning
rate, and a deep network at initialisation (BatchNorm over 8 values a channel in its last layers)
amplifies them from step to step.  The tolerances are those of that chaos, measured with a control:
two single-process runs differing only in their thread count (1 or 2) gave, over 2 epochs of 2 steps,
an epoch-1 loss 5e-5 apart (relative), an epoch-2 loss 2.3e-3 apart, weights a median 1.3e-4 and at
most 5.7e-3 apart; two processes against one gave 5e-7, 7e-4, 8e-5 and 5.6e-3.  A wrong share, a
per-process BatchNorm or an unaveraged gradient changes the first step's loss by percents.
"""

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from conftest import make_generic_dataset

ROOT = Path(__file__).resolve().parent.parent
FIRST_EPOCH_RTOL = 1e-4  # the first epoch's mean training loss, relative (its first step: sums in another order only)
LOSS_RTOL = 5e-3  # every epoch's training and validation loss, relative
WEIGHT_MEDIAN_ATOL = 5e-4  # the median absolute difference of the trained weights (of order 0.01-1)
WEIGHT_MAX_ATOL = 2e-2  # the largest: Adam's 4 steps of at most about lr = 1e-3 each, both ways, plus margin


def _train(args, out: Path, processes: int):
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT))
    launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={processes}"] \
        if processes > 1 else [sys.executable]
    cmd = [*launcher, "-m", "CephLandmarksLib", "train", *map(str, args), "--out", str(out)]
    return subprocess.run(cmd, env=env, cwd=ROOT, capture_output=True, text=True, timeout=240)


def _history(out: Path) -> list:
    return torch.load(Path(f"{out}.work") / "last.pt", weights_only=True)["history"]


@pytest.mark.slow
def test_two_processes_learn_what_one_learns_with_the_same_global_batch(tmp_path):
    (tmp_path / "data").mkdir()
    data = make_generic_dataset(tmp_path / "data", n_train=10, n_test=0, seed=5)
    args = ["--dataset", data, "--input-size", "64x64", "--epochs", "2", "--batch-size", "4", "--holdout", "2",
            "--device", "cpu", "--no-bf16", "--augment", "none", "--lr", "1e-3"]
    one, two = tmp_path / "one.safetensors", tmp_path / "two.safetensors"
    run1 = _train(args, one, 1)
    assert run1.returncode == 0, run1.stderr[-3000:]
    run2 = _train(args, two, 2)
    assert run2.returncode == 0, run2.stderr[-3000:]
    assert run2.stdout.strip().splitlines() == [str(two)]  # process 0 alone prints the result
    # Process 0 alone logs: one line per epoch, as the single process.
    epochs = [line for line in run2.stderr.splitlines() if line.startswith('{"epoch"')]
    assert len(epochs) == 2, run2.stderr[-3000:]
    assert "and 1 more processes (effective batch 4)" in run2.stderr

    h1, h2 = _history(one), _history(two)
    assert h2[0]["train_loss"] == pytest.approx(h1[0]["train_loss"], rel=FIRST_EPOCH_RTOL), (h1, h2)
    for a, b in zip(h1, h2, strict=True):
        for key in ("train_loss", "val_loss"):  # not the MRE: argmax of nearly flat maps jumps
            assert b[key] == pytest.approx(a[key], rel=LOSS_RTOL), (key, a, b)
    w1 = torch.load(Path(f"{one}.work") / "last.pt", weights_only=True)["model"]
    w2 = torch.load(Path(f"{two}.work") / "last.pt", weights_only=True)["model"]
    assert w1.keys() == w2.keys()
    weights = [k for k in w1 if w1[k].is_floating_point() and "running_" not in k]
    diff = torch.cat([(w1[k] - w2[k]).abs().flatten() for k in weights])
    assert float(diff.median()) < WEIGHT_MEDIAN_ATOL and float(diff.max()) < WEIGHT_MAX_ATOL, \
        (float(diff.median()), float(diff.max()))
    for k in w1:
        if not w1[k].is_floating_point():
            assert torch.equal(w1[k], w2[k]), k  # num_batches_tracked: the same number of steps
    # The tolerance is far below what training changed: the weights moved from their initial values.
    from CephLandmarksLib.network.model import build_model

    torch.manual_seed(0)
    w0 = build_model().state_dict()
    moved = torch.cat([(w1[k] - w0[k]).abs().flatten() for k in weights])
    assert float(moved.median()) > 2 * WEIGHT_MEDIAN_ATOL, float(moved.median())
    assert one.is_file() and two.is_file()  # process 0 wrote the calibrated model file


def test_the_shares_of_each_step_are_the_single_process_batch():
    """DistributedSampler, seeded as the single-process order, gives process r the images r, r + N, ...
    of that order: the shares of step s together are exactly the single process's batch s."""
    from CephLandmarksLib.training.distributed import SAMPLER_SEED_STRIDE, Processes, epoch_indices

    n, batch, world, seed, epoch = 24, 8, 2, 3, 5
    single = torch.randperm(n, generator=torch.Generator().manual_seed(seed * SAMPLER_SEED_STRIDE + epoch)).tolist()
    shares = [epoch_indices(Processes(r, world, r), n, seed, epoch) for r in range(world)]
    local = batch // world
    for step in range(n // batch):
        together = sorted(i for share in shares for i in share[step * local:(step + 1) * local])
        assert together == sorted(single[step * batch:(step + 1) * batch])


def test_global_batch_must_divide_among_the_processes():
    from CephLandmarksLib.errors import CephError
    from CephLandmarksLib.training.distributed import Processes, from_environment, local_batch_size

    assert local_batch_size(Processes(1, 4, 1), 8) == 2
    with pytest.raises(CephError, match="--batch-size 6 is the effective batch over 4 processes"):
        local_batch_size(Processes(0, 4, 0), 6)
    assert from_environment({"RANK": "1", "WORLD_SIZE": "2", "LOCAL_RANK": "1"}) == Processes(1, 2, 1)
    assert from_environment({}) == Processes(0, 1, 0)
    with pytest.raises(CephError):
        from_environment({"RANK": "2", "WORLD_SIZE": "2"})
