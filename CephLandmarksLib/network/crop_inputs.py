"""Radiograph -> the refiner's input: one small full-resolution crop per landmark, sampled in one go.

Each crop is read from the normalised image (images.normalise, the same intensities the first
stage sees) on its CropFrame's grid, bilinearly; where the crop is coarser than the image
(a 0.1 mm image seen at 0.125 mm a pixel), each crop pixel averages a finer sub-grid, so no
detail aliases.  Outside the image the crop is 0, as the first stage's padding is.
"""

import math

import numpy as np
import torch
import torch.nn.functional as F

from ..imaging.crops import CropFrame

MAX_SUPERSAMPLE = 4


def supersample_factor(frames: list[CropFrame]) -> int:
    """Sub-samples per crop pixel along each axis: about image pixels per crop pixel, at least 1."""
    k = min(float(np.min(f.scale)) for f in frames)
    return int(min(MAX_SUPERSAMPLE, max(1, math.ceil(1 / k - 1e-6))))


def sampling_grid(frames: list[CropFrame], height: int, width: int, factor: int = 1) -> torch.Tensor:
    """(L, h*factor, w*factor, 2) grid_sample coordinates (align_corners=False) of each crop's sub-pixels."""
    w, h = frames[0].size
    sub = (np.arange(factor) + 0.5) / factor - 0.5  # sub-pixel offsets inside a crop pixel
    us = (np.arange(w)[:, None] + sub[None]).ravel()
    vs = (np.arange(h)[:, None] + sub[None]).ravel()
    uu, vv = np.meshgrid(us, vs)
    uv = np.stack([uu, vv], -1)
    grids = []
    for f in frames:
        xy = f.crop_to_image(uv)
        grids.append(np.stack([(2 * xy[..., 0] + 1) / width - 1, (2 * xy[..., 1] + 1) / height - 1], -1))
    return torch.as_tensor(np.stack(grids), dtype=torch.float32)


def sample_crops(image: torch.Tensor, frames: list[CropFrame]) -> torch.Tensor:
    """Normalised image (H, W) -> crops (L, 1, h, w) float32, one per frame (all of one size)."""
    if not frames:
        raise ValueError("no crop frames")
    img = torch.as_tensor(image, dtype=torch.float32)
    height, width = img.shape[-2:]
    factor = supersample_factor(frames)
    grid = sampling_grid(frames, height, width, factor)
    src = img.reshape(1, 1, height, width).expand(len(frames), 1, height, width)
    out = F.grid_sample(src, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    return F.avg_pool2d(out, factor) if factor > 1 else out
