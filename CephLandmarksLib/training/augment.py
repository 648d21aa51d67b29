"""Training augmentation applied to images and landmarks together, in model pixels.

Geometric: a random affine (rotation, scale, translation) and a smooth elastic warp;
the landmarks follow the same map.  Intensity: gamma, contrast, brightness, noise.
A landmark pushed outside the canvas is returned as it is; the loss ignores it.

For images from other machines (all off by default; `AugmentSettings.robust()` turns
them on): a band cut away at the back of the skull (left) or below the chin (bottom),
as a collimator or a smaller detector does: its landmarks keep their targets, so the
model learns to put them in the blank band, which detection then reports as missing;
random intensity windows; Gaussian blur; JPEG block artefacts.  Random numbers for
these are drawn only when they are on, so the default settings draw the same
sequence as before they existed (a resumed training repeats the uninterrupted one).
"""

import math
from dataclasses import dataclass

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
    # Shifts between machines; all off by default.
    crop_p: float = 0.0  # probability of cutting away a band at the left (back of the skull) or bottom (chin)
    crop_fraction: tuple[float, float] = (0.1, 0.3)  # of the canvas width / height
    window_p: float = 0.0  # probability of a random intensity window [lo, hi] -> [0, 1], clipped
    window: float = 0.2  # lo in [-w, w], hi in [1 - w, 1 + w]
    blur_p: float = 0.0
    blur_sigma_px: tuple[float, float] = (0.5, 1.5)
    jpeg_p: float = 0.0
    jpeg_quality: tuple[float, float] = (30.0, 90.0)

    @classmethod
    def off(cls) -> "AugmentSettings":
        """No augmentation: the images as prepared (for comparisons, e.g. the distributed-training test)."""
        return cls(rotation_deg=0.0, scale=(1.0, 1.0), translation=0.0, elastic_px=0.0, elastic_p=0.0,
                   gamma=(1.0, 1.0), contrast=(1.0, 1.0), brightness=0.0, noise_std=0.0)

    @classmethod
    def robust(cls) -> "AugmentSettings":
        """Covers other machines: scale 0.7-1.4, wider shifts, crops, exposure, blur, JPEG, noise."""
        return cls(rotation_deg=12.0, scale=(0.7, 1.4), translation=0.12, gamma=(0.5, 2.0), contrast=(0.7, 1.3),
                   brightness=0.15, noise_std=0.06, crop_p=0.3, window_p=0.3, blur_p=0.3, jpeg_p=0.3)


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

    if cfg.crop_p > 0:
        out = cut_band(out, gen, cfg.crop_p, cfg.crop_fraction)
    if cfg.blur_p > 0:
        out = random_blur(out, gen, cfg.blur_p, cfg.blur_sigma_px)
    if cfg.window_p > 0:
        out = random_window(out, gen, cfg.window_p, cfg.window)

    # Intensity.
    gamma = torch.exp(_uniform(n, math.log(cfg.gamma[0]), math.log(cfg.gamma[1]), gen)).view(n, 1, 1, 1)
    contrast = _uniform(n, *cfg.contrast, gen).view(n, 1, 1, 1)
    bright = _uniform(n, -cfg.brightness, cfg.brightness, gen).view(n, 1, 1, 1)
    noise_std = _uniform(n, 0, cfg.noise_std, gen).view(n, 1, 1, 1)
    out = out.clamp(0, 1) ** gamma * contrast + bright
    out = out + torch.randn(out.shape, generator=gen) * noise_std
    if cfg.jpeg_p > 0:
        out = random_jpeg(out, gen, cfg.jpeg_p, cfg.jpeg_quality)
    return out, uv_out


def cut_band(images, gen, p, fraction):
    """Zero (or fill with a flat bright value, as an unexposed collimated area) a band at the left or bottom."""
    n, _, h, w = images.shape
    out = images.clone()
    on = torch.rand(n, generator=gen) < p
    bottom = torch.rand(n, generator=gen) < 0.5
    frac = _uniform(n, *fraction, gen)
    fill = torch.where(torch.rand(n, generator=gen) < 0.5, torch.zeros(n), _uniform(n, 0.6, 1.0, gen))
    for i in torch.nonzero(on).flatten().tolist():
        if bottom[i]:
            out[i, :, h - int(round(float(frac[i]) * h)):, :] = fill[i]
        else:
            out[i, :, :, : int(round(float(frac[i]) * w))] = fill[i]
    return out


def gaussian_blur(image, sigma_px: float):
    """Separable Gaussian blur of (C, H, W) or (N, C, H, W) with edge replication."""
    radius = max(1, int(math.ceil(3 * sigma_px)))
    x = torch.arange(-radius, radius + 1, dtype=torch.float32)
    k = torch.exp(-(x**2) / (2 * sigma_px**2))
    k = k / k.sum()
    t = image[None] if image.dim() == 3 else image
    t = F.pad(t, (radius, radius, radius, radius), mode="replicate")
    c = t.shape[1]
    t = F.conv2d(t, k.view(1, 1, 1, -1).repeat(c, 1, 1, 1), groups=c)
    t = F.conv2d(t, k.view(1, 1, -1, 1).repeat(c, 1, 1, 1), groups=c)
    return t[0] if image.dim() == 3 else t


def _apply_randomly(images, gen, p, value_range, fn):
    """fn(image, value) on each image with probability p, value drawn uniformly from value_range."""
    on = torch.rand(len(images), generator=gen) < p
    values = _uniform(len(images), *value_range, gen)
    out = images.clone()
    for i in torch.nonzero(on).flatten().tolist():
        out[i] = fn(images[i], float(values[i]))
    return out


def random_blur(images, gen, p, sigma_range):
    return _apply_randomly(images, gen, p, sigma_range, gaussian_blur)


def random_window(images, gen, p, width):
    """A random display window [lo, hi] mapped to [0, 1] and clipped, as another machine's exposure might be."""
    n = len(images)
    on = (torch.rand(n, generator=gen) < p).view(n, 1, 1, 1)
    lo = _uniform(n, -width, width, gen).view(n, 1, 1, 1)
    hi = _uniform(n, 1 - width, 1 + width, gen).view(n, 1, 1, 1)
    return torch.where(on, ((images - lo) / (hi - lo)).clamp(0, 1), images)


_JPEG_LUMA = torch.tensor([
    [16, 11, 10, 16, 24, 40, 51, 61], [12, 12, 14, 19, 26, 58, 60, 55], [14, 13, 16, 24, 40, 57, 69, 56],
    [14, 17, 22, 29, 51, 87, 80, 62], [18, 22, 37, 56, 68, 109, 103, 77], [24, 35, 55, 64, 81, 104, 113, 92],
    [49, 64, 78, 87, 103, 121, 120, 101], [72, 92, 95, 98, 112, 100, 103, 99]], dtype=torch.float32)


def _dct_matrix(n=8):
    k = torch.arange(n, dtype=torch.float32)
    d = torch.cos(math.pi * (2 * k[None, :] + 1) * k[:, None] / (2 * n)) * math.sqrt(2 / n)
    d[0] /= math.sqrt(2)
    return d


def jpeg_like(image, quality: float):
    """(C, H, W) in about [0, 1] -> the same after JPEG-style 8x8 DCT quantisation (luminance table)."""
    c, h, w = image.shape
    ph, pw = (-h) % 8, (-w) % 8
    x = F.pad(image[None], (0, pw, 0, ph), mode="replicate")[0] * 255 - 128
    hh, ww = x.shape[1:]
    blocks = x.reshape(c, hh // 8, 8, ww // 8, 8).permute(0, 1, 3, 2, 4)  # (C, By, Bx, 8, 8)
    d = _dct_matrix()
    q = float(quality)
    scale = 5000 / q if q < 50 else 200 - 2 * q
    table = torch.clamp(torch.floor((_JPEG_LUMA * scale + 50) / 100), min=1)
    coef = d @ blocks @ d.T
    blocks = d.T @ (torch.round(coef / table) * table) @ d
    x = blocks.permute(0, 1, 3, 2, 4).reshape(c, hh, ww)
    return ((x + 128) / 255)[:, :h, :w]


def random_jpeg(images, gen, p, quality_range):
    return _apply_randomly(images, gen, p, quality_range, jpeg_like)
