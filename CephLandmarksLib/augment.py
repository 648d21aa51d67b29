"""Training augmentation applied to images and landmarks together, in model pixels.

Geometric: a random affine (rotation, scale, translation) and a smooth elastic warp;
the landmarks follow the same map.  Intensity: gamma, contrast, brightness, noise.
A landmark pushed outside the canvas is returned as it is; the loss ignores it.
"""

from dataclasses import dataclass
import math

import torch
import torch.nn.functional as F


@dataclass(frozen=True)
class AugmentSettings:
    rotation_deg: float = 10.0
    scale: tuple[float, float] = (0.9, 1.1)
    translation: float = 0.05  # fraction of the canvas size
    elastic_px: float = 3.0  # std of the elastic displacement at the control points
    elastic_p: float = 0.5
    gamma: tuple[float, float] = (0.7, 1.5)
    contrast: tuple[float, float] = (0.8, 1.2)
    brightness: float = 0.1
    noise_std: float = 0.03


def _uniform(n, lo, hi, gen):
    return lo + (hi - lo) * torch.rand(n, generator=gen)


def augment_batch(images: torch.Tensor, uv: torch.Tensor, gen: torch.Generator, cfg=AugmentSettings()):
    """images (N, 1, H, W) in about [0, 1], uv (N, L, 2) model pixels -> augmented copies."""
    n, _, h, w = images.shape
    centre = torch.tensor([(w - 1) / 2, (h - 1) / 2])
    theta = _uniform(n, -cfg.rotation_deg, cfg.rotation_deg, gen) * math.pi / 180
    scale = torch.exp(_uniform(n, math.log(cfg.scale[0]), math.log(cfg.scale[1]), gen))
    shift = (torch.rand(n, 2, generator=gen) * 2 - 1) * cfg.translation * torch.tensor([w, h])
    cos, sin = torch.cos(theta), torch.sin(theta)
    rot = torch.stack([torch.stack([cos, -sin], -1), torch.stack([sin, cos], -1)], -2)  # (N, 2, 2)
    fwd = rot * scale[:, None, None]  # source -> output: p = fwd (q - c) + c + t

    # Elastic displacement d(p) in output pixels: smooth noise on a coarse grid.
    disp = torch.randn(n, 2, 5, 4, generator=gen) * cfg.elastic_px
    disp = disp * (torch.rand(n, 1, 1, 1, generator=gen) < cfg.elastic_p)
    disp = F.interpolate(disp, size=(h, w), mode="bicubic", align_corners=True)  # (N, 2, H, W)

    # Sampling grid: q(p) = fwd^-1 (p + d(p) - c - t) + c
    ys, xs = torch.meshgrid(torch.arange(h, dtype=torch.float32), torch.arange(w, dtype=torch.float32), indexing="ij")
    p = torch.stack([xs, ys], -1)[None] + disp.permute(0, 2, 3, 1)  # (N, H, W, 2)
    inv = torch.linalg.inv(fwd)
    q = torch.einsum("nij,nhwj->nhwi", inv, p - centre - shift[:, None, None]) + centre
    grid = torch.stack([(2 * q[..., 0] + 1) / w - 1, (2 * q[..., 1] + 1) / h - 1], -1)
    out = F.grid_sample(images, grid, mode="bilinear", padding_mode="zeros", align_corners=False)

    # Landmarks: p0 = fwd (q - c) + c + t, then undo the displacement to first order.
    p0 = torch.einsum("nij,nlj->nli", fwd, uv - centre) + centre + shift[:, None]
    norm = torch.stack([(2 * p0[..., 0] + 1) / w - 1, (2 * p0[..., 1] + 1) / h - 1], -1)
    d_at = F.grid_sample(disp, norm[:, :, None], mode="bilinear", align_corners=False)[..., 0]  # (N, 2, L)
    uv_out = p0 - d_at.permute(0, 2, 1)

    # Intensity.
    gamma = torch.exp(_uniform(n, math.log(cfg.gamma[0]), math.log(cfg.gamma[1]), gen)).view(n, 1, 1, 1)
    contrast = _uniform(n, *cfg.contrast, gen).view(n, 1, 1, 1)
    bright = _uniform(n, -cfg.brightness, cfg.brightness, gen).view(n, 1, 1, 1)
    noise_std = _uniform(n, 0, cfg.noise_std, gen).view(n, 1, 1, 1)
    out = out.clamp(0, 1) ** gamma * contrast + bright
    out = out + torch.randn(out.shape, generator=gen) * noise_std
    return out, uv_out
