"""The refiner's training data: full-resolution patches around every true landmark, and crops cut
from them where the first stage would have put them.

- **Patches**, once per (image, landmark): `patch` crop pixels a side at the crop's millimetres
  a pixel, centred on the truth, read from the normalised radiograph (network/crop_inputs.py,
  the detection path), kept as float16 in memory and in the work folder's cache.
- **Where the first stage puts a crop** (`Jitter`): per landmark, the first stage's own errors
  on images it did not train on (its held-out images), as vectors in mm.  A training crop's
  centre is the (augmented) truth plus one of these vectors drawn at random, scaled by a factor
  in `scale` and blurred by a Gaussian of `kde_mm` (a smoothed empirical distribution); with
  probability `wide_p` it is instead drawn uniformly from a disc of `wide_mm` (errors larger
  than the few held-out ones show).
- **Augmentation**: training/augment.py's, on the whole patch, before the crop is cut.
"""

from dataclasses import dataclass

import numpy as np
import torch

from ..imaging.crops import crop_frames
from ..imaging.images import normalise, read_radiograph
from ..network.crop_inputs import sample_crops
from .augment import AugmentSettings, augment_batch


@dataclass(frozen=True)
class Jitter:
    errors_mm: np.ndarray  # (N, L, 2) held-out errors (prediction - truth) in image axes, mm
    scale: tuple[float, float] = (0.5, 1.5)
    kde_mm: float = 0.5
    wide_p: float = 0.2
    wide_mm: float = 6.0
    max_mm: float = 7.0  # no centre farther than this from the truth (the crop must hold it)

    def draw(self, landmarks: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        """(N, 2) offsets in mm for crops of the given landmark indices (N,)."""
        n = len(landmarks)
        errors = torch.as_tensor(self.errors_mm, dtype=torch.float32)  # (M, L, 2)
        pick = torch.randint(0, errors.shape[0], (n,), generator=gen)
        base = errors[pick, landmarks]
        factor = self.scale[0] + (self.scale[1] - self.scale[0]) * torch.rand(n, 1, generator=gen)
        kde = base * factor + torch.randn(n, 2, generator=gen) * self.kde_mm
        angle = torch.rand(n, generator=gen) * 2 * np.pi
        radius = self.wide_mm * torch.sqrt(torch.rand(n, generator=gen))
        wide = torch.stack([radius * torch.cos(angle), radius * torch.sin(angle)], -1)
        out = torch.where((torch.rand(n, 1, generator=gen) < self.wide_p), wide, kde)
        norm = out.norm(dim=1, keepdim=True).clamp(min=1e-9)
        return out * (norm.clamp(max=self.max_mm) / norm)

    def summary(self) -> dict:
        """Per-landmark mean radial held-out error (mm) and the settings, for the refiner file's record."""
        radial = np.hypot(self.errors_mm[..., 0], self.errors_mm[..., 1])
        return {"n_images": int(self.errors_mm.shape[0]), "mean_error_mm": np.round(radial.mean(0), 3).tolist(),
                "scale": list(self.scale), "kde_mm": self.kde_mm, "wide_p": self.wide_p, "wide_mm": self.wide_mm,
                "max_mm": self.max_mm}


def read_normalised(sample):
    """(normalised image (H, W) float32, spacing (x, y) mm) of one annotated sample."""
    rad = read_radiograph(sample.image_path, sample.spacing_mm)
    return normalise(rad.pixels), rad.spacing_mm


def prepare_patches(samples, patch: int, mm_per_px: float, desc="preparing patches") -> torch.Tensor:
    """(N, L, patch, patch) float16 patches centred on each sample's true landmarks."""
    from tqdm import tqdm

    out = []
    for s in tqdm(samples, desc=desc, leave=False, disable=len(samples) < 8):
        image, spacing = read_normalised(s)
        frames = crop_frames(s.landmarks_px, spacing, (patch, patch), mm_per_px)
        out.append(sample_crops(torch.as_tensor(image), frames)[:, 0].half())
    return torch.stack(out)


def training_batch(patches: torch.Tensor, pairs: torch.Tensor, jitter: Jitter, mm_per_px: float, crop: int,
                   gen: torch.Generator, aug: AugmentSettings):
    """(crops (B, 1, crop, crop), landmark indices (B,), true points (B, 2) in crop pixels) for
    the (image, landmark) `pairs` (B, 2): patches augmented, crops cut around jittered centres."""
    images, landmarks = pairs[:, 0], pairs[:, 1]
    x = patches[images, landmarks].float()[:, None]  # (B, 1, P, P)
    size = x.shape[-1]
    centre = torch.full((len(pairs), 1, 2), (size - 1) / 2)
    x, uv = augment_batch(x, centre, gen, aug)
    uv = uv[:, 0]
    want = uv + jitter.draw(landmarks, gen) / mm_per_px  # crop centres, patch pixels
    origin = torch.round(want - (crop - 1) / 2).long().clamp(0, size - crop)  # (B, 2) top-left (u, v)
    rows = origin[:, 1, None] + torch.arange(crop)  # (B, crop)
    cols = origin[:, 0, None] + torch.arange(crop)
    b = torch.arange(len(pairs))[:, None, None]
    crops = x[:, 0][b, rows[:, :, None], cols[:, None, :]][:, None]
    return crops, landmarks, uv - origin.float()
