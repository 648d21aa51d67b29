"""The second stage at detection: crops at full resolution around the coarse points, the refiner's
fine maps over them (all 19 in one forward), and the combined map (combined_map.py).

The predictor calls `refine` after its coarse pass (option REFINE_OPTION on `detect`); every
measure read afterwards (ERE, P(error > 4 mm), regions, intervals, flags) reads the combined map.
"""

import numpy as np
import torch

from ..imaging.crops import CropFrame, crop_frames
from ..network.crop_inputs import sample_crops
from ..network.heatmaps import softmax_2d
from ..store.refinerfile import LoadedRefiner, temperatures_tensor
from .combined_map import CombinedMap, combine

REFINE_OPTION = "--refine"


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


@torch.no_grad()
def fine_probs(refiner: LoadedRefiner, normalised: np.ndarray, crops: list[CropFrame], device="cpu") -> torch.Tensor:
    """(L, h, w) calibrated fine probabilities, landmark i on crops[i], from the normalised image (H, W)."""
    x = sample_crops(torch.as_tensor(np.asarray(normalised), dtype=torch.float32), crops).to(device)
    landmarks = torch.arange(len(crops), device=device)
    logits = refiner.net.eval()(x, landmarks).float().cpu()
    logits = logits.masked_fill(outside_image_masks(crops, np.asarray(normalised).shape[::-1]), -1e4)
    return softmax_2d(logits[None], temperatures_tensor(refiner.info))[0]


def refine(refiner: LoadedRefiner, normalised: np.ndarray, spacing_mm, coarse_probs, model_to_image,
           coarse_points_px, mirror_x: bool = False, device="cpu") -> CombinedMap:
    """The combined map of one radiograph: crops centred on the coarse points (L, 2, image pixels),
    mirrored as the coarse pass saw the image, the fine maps over them, and the coarse maps
    (L, H, W) on the model grid placed by `model_to_image` (ModelFrame.model_to_image_matrix)."""
    info = refiner.info
    crops = crop_frames(coarse_points_px, spacing_mm, (info.crop_size, info.crop_size), info.crop_mm_per_px,
                        mirror_x)
    q = fine_probs(refiner, normalised, crops, device).numpy()
    return combine(np.asarray(coarse_probs), model_to_image, spacing_mm, q, crops, coarse_points_px,
                   info.min_inside_mass)
