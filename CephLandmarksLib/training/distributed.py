"""Training on several processes (GPUs, machines) with torchrun and DistributedDataParallel.

`torchrun --nproc_per_node N -m CephLandmarksLib train ...` starts N processes; torchrun sets
RANK, WORLD_SIZE and LOCAL_RANK, and each process trains on its share of every batch:
- the process group: nccl on CUDA (process LOCAL_RANK on cuda:LOCAL_RANK), gloo on the CPU;
- the data: a DistributedSampler over the training images, seeded like the single-process
  order (seed * 100003 + epoch), so that the N shares of step s are exactly the images of the
  single-process batch s; `--batch-size` is the effective (global) batch, divided among the
  processes, and the learning rate applies to that global batch, unchanged;
- BatchNorm over the global batch: SyncBatchNorm on CUDA, GlobalBatchNorm2d below on the CPU
  (SyncBatchNorm runs on GPUs only), so N processes compute what one process computes on the
  whole batch, up to the order of floating-point sums;
- augmentation seeded per process (seed, epoch, rank), so the processes do not draw the same;
- process 0 alone writes the prepared cache, checkpoints, logs and the model file.
Without torchrun (WORLD_SIZE unset or 1) nothing here changes the single-process training.
"""

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn

from ..errors import CephError

SAMPLER_SEED_STRIDE = 100003  # the single-process loop's order: randperm seeded by seed * stride + epoch


@dataclass(frozen=True)
class Processes:
    """Where this process stands among the training's processes."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def distributed(self) -> bool:
        return self.world > 1

    @property
    def main(self) -> bool:
        """Process 0: the one that writes files and logs."""
        return self.rank == 0


def from_environment(env=None) -> Processes:
    """The processes torchrun describes in RANK, WORLD_SIZE and LOCAL_RANK (one process without them)."""
    env = os.environ if env is None else env
    try:
        world = int(env.get("WORLD_SIZE", "1"))
        rank = int(env.get("RANK", "0"))
        local = int(env.get("LOCAL_RANK", str(rank)))
    except ValueError:
        raise CephError("RANK, WORLD_SIZE and LOCAL_RANK must be integers (torchrun sets them)") from None
    if world < 1 or not 0 <= rank < world:
        raise CephError(f"RANK {rank} is not within WORLD_SIZE {world}")
    return Processes(rank, world, local)


def is_main_process() -> bool:
    """Whether this is process 0 (or the only one): the process that prints the result."""
    return from_environment().main


def device_for(procs: Processes, device: str) -> torch.device:
    """This process's device: cuda:LOCAL_RANK when training on CUDA, else the CPU."""
    from ..network.model import pick_device

    picked = pick_device(device)
    if not procs.distributed or picked.type != "cuda":
        if procs.distributed and picked.type not in ("cpu",):
            raise CephError(f"training under torchrun runs on CUDA or the CPU, not {picked.type}")
        return picked
    if procs.local_rank >= torch.cuda.device_count():
        raise CephError(f"LOCAL_RANK {procs.local_rank} but this machine has {torch.cuda.device_count()} CUDA "
                        "devices; start at most that many processes per node")
    torch.cuda.set_device(procs.local_rank)
    return torch.device("cuda", procs.local_rank)


def start(procs: Processes, device: torch.device) -> None:
    """Join the process group (once): nccl on CUDA, gloo on the CPU."""
    if procs.distributed and not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo", rank=procs.rank,
                                world_size=procs.world)


def barrier(procs: Processes) -> None:
    if procs.distributed:
        dist.barrier()


def local_batch_size(procs: Processes, batch_size: int) -> int:
    """Each process's share of the effective batch; CephError unless it divides evenly."""
    if batch_size % procs.world:
        raise CephError(f"--batch-size {batch_size} is the effective batch over {procs.world} processes; "
                        f"choose a multiple of {procs.world}")
    return batch_size // procs.world


def epoch_indices(procs: Processes, n: int, seed: int, epoch: int) -> list:
    """This process's training images of the epoch, in order (torch's DistributedSampler)."""
    from torch.utils.data import DistributedSampler

    sampler = DistributedSampler(range(n), num_replicas=procs.world, rank=procs.rank, shuffle=True,
                                 seed=seed * SAMPLER_SEED_STRIDE, drop_last=False)
    sampler.set_epoch(epoch)
    return list(sampler)


def augmentation_generator(procs: Processes, seed: int, epoch: int) -> torch.Generator:
    """Augmentation randomness of this process in this epoch: seeded by (seed, epoch, rank)."""
    return torch.Generator().manual_seed((seed * SAMPLER_SEED_STRIDE + epoch) * 1009 + procs.rank)


def mean_over_processes(value: torch.Tensor, procs: Processes) -> torch.Tensor:
    """The mean of a scalar over the processes (the global batch's loss: every process agrees on it)."""
    if not procs.distributed:
        return value
    out = value.detach().clone()
    dist.all_reduce(out)
    return out / procs.world


class _SumOverProcesses(torch.autograd.Function):
    """The sum of a tensor over the processes, whose gradient is the sum of the processes' gradients
    (each process's loss depends on every process's share through the batch statistics)."""

    @staticmethod
    def forward(ctx, tensor):
        out = tensor.clone()
        dist.all_reduce(out)
        return out

    @staticmethod
    def backward(ctx, grad):
        out = grad.clone()
        dist.all_reduce(out)
        return out


class GlobalBatchNorm2d(nn.BatchNorm2d):
    """BatchNorm2d whose training statistics are those of the global batch across the processes
    (SyncBatchNorm for the CPU and gloo).  The sums carry the gradient back to every process, as
    SyncBatchNorm does; eval mode uses the running statistics, without communication.  Its state
    is a BatchNorm2d's."""

    def forward(self, x):
        if not self.training or not dist.is_initialized():
            return super().forward(x)
        all_reduce = _SumOverProcesses.apply
        dims = (0, 2, 3)
        count = torch.tensor([x.numel() // x.shape[1]], dtype=x.dtype, device=x.device)
        n = all_reduce(count)
        mean = all_reduce(x.sum(dims)) / n
        centred = x - mean[None, :, None, None]
        var = all_reduce((centred * centred).sum(dims)) / n
        if self.track_running_stats:
            with torch.no_grad():
                self.num_batches_tracked += 1
                m = self.momentum if self.momentum is not None else 1.0 / float(self.num_batches_tracked)
                self.running_mean.mul_(1 - m).add_(mean.detach() * m)
                self.running_var.mul_(1 - m).add_(var.detach() * (n / (n - 1).clamp(min=1)) * m)
        y = centred * torch.rsqrt(var + self.eps)[None, :, None, None]
        if self.affine:
            y = y * self.weight[None, :, None, None] + self.bias[None, :, None, None]
        return y


def global_batchnorm(net: nn.Module, device: torch.device) -> nn.Module:
    """net with every BatchNorm2d computing global-batch statistics (in place; the state dict keeps its keys)."""
    if device.type == "cuda":
        return nn.SyncBatchNorm.convert_sync_batchnorm(net)
    for module in net.modules():
        if type(module) is nn.BatchNorm2d:
            module.__class__ = GlobalBatchNorm2d
    return net


class _Forward(nn.Module):
    """The training forward (the loop's: bf16 features, float32 head) as a module for DDP to wrap."""

    def __init__(self, net, device, bf16, forward):
        super().__init__()
        self.net, self.device, self.bf16, self._forward = net, device, bf16, forward

    def forward(self, x):
        return self._forward(self.net, x, self.device, self.bf16)


def wrap(net: nn.Module, procs: Processes, device: torch.device, bf16: bool, forward):
    """A callable x -> logits for training: net itself on one process, DistributedDataParallel on several
    (the gradients averaged over the processes after each backward).  `forward(net, x, device, bf16)` is
    the loop's own (passed in, so this module does not import the loop that imports it)."""
    if not procs.distributed:
        return lambda x: forward(net, x, device, bf16)
    from torch.nn.parallel import DistributedDataParallel

    global_batchnorm(net, device)
    return DistributedDataParallel(_Forward(net, device, bf16, forward),
                                   device_ids=[device.index] if device.type == "cuda" else None)


def finish(procs: Processes) -> None:
    """Leave the process group."""
    if procs.distributed and dist.is_initialized():
        dist.destroy_process_group()
