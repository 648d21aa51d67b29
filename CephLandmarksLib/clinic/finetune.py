"""Clinic fine-tune: the decoder and head retrained for a few epochs on a clinic's annotated
images, starting from the base weights, with the encoder frozen.

The encoder runs once per image (its outputs are kept in bfloat16); each epoch then costs
only the decoder.  `adapt` runs six fine-tunes (five folds and the final one), and adapting 20
images took 3 min 17 s end to end on two idle CPU cores (docs/adaptation.md).  BatchNorm keeps
the base model's statistics (eval mode): a batch of two clinic images is no estimate of
them.  No augmentation: the few epochs and the small learning rate are the regularisers.
"""

import copy
import math

import torch

from ..network.heatmaps import heatmap_nll
from ..network.model import LandmarkUNet

EPOCHS = 3
LEARNING_RATE = 3e-4
BATCH_SIZE = 2
TRAINED = ("decoder.", "head.")  # parameter-name prefixes a fine-tune trains; the encoder stays frozen


@torch.no_grad()
def encoder_outputs(net: LandmarkUNet, x: torch.Tensor) -> tuple:
    """The frozen encoder's outputs for one model input (1, H, W), bfloat16 on the CPU."""
    net.eval()
    device = next(net.parameters()).device
    return tuple(t[0].to("cpu", torch.bfloat16) for t in net.encode(x[None].float().to(device)))


def _batch(encoded, idx, device) -> tuple:
    """Encoder outputs of the images idx, stacked channels-last (about a third faster on CPU, as in training)."""
    return tuple(torch.stack([encoded[i][k] for i in idx]).to(device).contiguous(memory_format=torch.channels_last)
                 for k in range(len(encoded[0])))


def _logits(net: LandmarkUNet, skips) -> torch.Tensor:
    """Logits from encoder outputs; bf16 autocast for the decoder, the head in float32 (as in training)."""
    with torch.autocast(skips[0].device.type, dtype=torch.bfloat16, enabled=skips[0].device.type in ("cpu", "cuda")):
        y = net.decode(skips)
    return net.head(y.float())


def fine_tune(net: LandmarkUNet, encoded: list, targets_uv, epochs: int = EPOCHS, lr: float = LEARNING_RATE,
              seed: int = 0) -> LandmarkUNet:
    """A copy of `net` whose decoder and head are trained on the encoded images (encoder_outputs)
    against their true points targets_uv (N, L, 2) in model pixels; `net` is left as it is."""
    tuned = copy.deepcopy(net).eval().to(memory_format=torch.channels_last)
    params = []
    for name, p in tuned.named_parameters():
        p.requires_grad_(name.startswith(TRAINED))
        if p.requires_grad:
            params.append(p)
    opt = torch.optim.Adam(params, lr=lr)
    device = next(tuned.parameters()).device
    uv = torch.as_tensor(targets_uv, dtype=torch.float32)
    gen = torch.Generator().manual_seed(seed)
    steps = math.ceil(len(encoded) / BATCH_SIZE)
    for epoch in range(epochs):
        order = torch.randperm(len(encoded), generator=gen).tolist()
        for k in range(steps):
            for group in opt.param_groups:  # cosine decay to zero over the run
                group["lr"] = lr * 0.5 * (1 + math.cos(math.pi * (epoch * steps + k) / (epochs * steps)))
            idx = order[k * BATCH_SIZE : (k + 1) * BATCH_SIZE]
            loss = heatmap_nll(_logits(tuned, _batch(encoded, idx, device)), uv[idx].to(device))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    for p in tuned.parameters():
        p.requires_grad_(True)
    return tuned.to(memory_format=torch.contiguous_format).eval()


@torch.no_grad()
def logits_of(net: LandmarkUNet, encoded_one: tuple) -> torch.Tensor:
    """(L, H, W) float32 logits on the CPU for one image's encoder outputs."""
    device = next(net.parameters()).device
    return _logits(net.eval(), tuple(t[None].to(device) for t in encoded_one))[0].float().cpu()
