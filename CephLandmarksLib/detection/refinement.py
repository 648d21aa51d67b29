"""The second stage at detection: crops at full resolution around the coarse points, the refiner's
fine maps over them (all 19 in one forward), and the combined map (combined_map.py).

With a refiner (by default the one beside the model: store.registry.default_refiner), the
predictor's observe runs `fine_logits` on crops centred on the coarse points of its kept pass, and
decide combines them with the coarse maps; every measure read afterwards (ERE, P(error > 4 mm),
regions, intervals, flags) reads the combined map.
"""

import numpy as np
import torch

from ..imaging.crops import CropFrame, crop_frames
from ..network.crop_inputs import sample_crops
from ..network.heatmaps import softmax_2d
from ..store.refinerfile import LoadedRefiner, temperatures_tensor
from .combined_map import CombinedMap, combine

REFINE_OPTION = "--refine"
REFINE_BESIDE = "auto"  # --refine auto: the refiner file beside the model (store.registry.refiner_beside)
REFINE_NONE = "none"  # --refine none: the first stage alone


def outside_image_masks(crops: list[CropFrame], image_size) -> torch.Tensor:
    """(L, h, w) bool: crop pixels whose centres fall outside the image (the fine map puts no mass there)."""
    w_img, h_img = image_size
    w, h = crops[0].size
    vv, uu = np.mgrid[0:h, 0:w].astype(np.float64)
    uv = np.stack([uu, vv], -1)
    out = []
    for c in crops:
        xy = c.crop_to_image(uv)
        out.append((xy[..., 0] < -0.5) | (xy[..., 0] > w_img - 0.5) | (xy[..., 1] < -0.5) | (xy[..., 1] > h_img - 0.5))
    return torch.as_tensor(np.stack(out))


def crops_for(refiner: LoadedRefiner, points_px, spacing_mm, mirror_x: bool = False,
              believed_spacing_mm=None) -> list[CropFrame]:
    """The refiner's crops (its size and scale) centred on points (L, 2) image pixels, mirrored as the
    coarse pass saw the image.  believed_spacing_mm: the spacing the coarse pass gave an image whose own
    is only assumed (fit-width framing); the crops then cut the anatomy at the size the refiner was
    trained on in that belief, and their millimetres stay the image's (assumed) ones."""
    info = refiner.info
    mm_per_px = info.crop_mm_per_px
    if believed_spacing_mm is not None:
        mm_per_px *= float(np.mean(np.asarray(spacing_mm, dtype=np.float64) /
                                   np.asarray(believed_spacing_mm, dtype=np.float64)))
    return crop_frames(points_px, spacing_mm, (info.crop_size, info.crop_size), mm_per_px, mirror_x)


@torch.no_grad()
def fine_logits(refiner: LoadedRefiner, normalised: np.ndarray, crops: list[CropFrame], device="cpu") -> torch.Tensor:
    """(L, h, w) the refiner's logits, landmark i on crops[i], from the normalised image (H, W); the crop
    pixels off the image are masked (-1e4: no fine mass there)."""
    x = sample_crops(torch.as_tensor(np.asarray(normalised), dtype=torch.float32), crops).to(device)
    landmarks = torch.arange(len(crops), device=device)
    logits = refiner.net.eval()(x, landmarks).float().cpu()
    return logits.masked_fill(outside_image_masks(crops, np.asarray(normalised).shape[::-1]), -1e4)


def fine_maps(refiner: LoadedRefiner, logits: torch.Tensor, temperature_scale: float = 1.0) -> np.ndarray:
    """(L, h, w) calibrated fine probabilities (the refiner's temperatures, times a clinic's factor) from
    fine_logits."""
    return softmax_2d(logits[None], temperatures_tensor(refiner.info) * float(temperature_scale))[0].numpy()


def fine_probs(refiner: LoadedRefiner, normalised: np.ndarray, crops: list[CropFrame], device="cpu") -> torch.Tensor:
    """(L, h, w) calibrated fine probabilities, landmark i on crops[i], from the normalised image (H, W)."""
    return torch.as_tensor(fine_maps(refiner, fine_logits(refiner, normalised, crops, device)))


def refine(refiner: LoadedRefiner, normalised: np.ndarray, spacing_mm, coarse_probs, model_to_image,
           coarse_points_px, mirror_x: bool = False, device="cpu") -> CombinedMap:
    """The combined map of one radiograph: crops centred on the coarse points (L, 2, image pixels),
    mirrored as the coarse pass saw the image, the fine maps over them, and the coarse maps
    (L, H, W) on the model grid placed by `model_to_image` (ModelFrame.model_to_image_matrix).
    The predictor runs the same steps split in two: fine_logits in observe, combine in decide."""
    crops = crops_for(refiner, coarse_points_px, spacing_mm, mirror_x)
    q = fine_probs(refiner, normalised, crops, device).numpy()
    return combine(np.asarray(coarse_probs), model_to_image, spacing_mm, q, crops, coarse_points_px,
                   refiner.info.min_inside_mass)
