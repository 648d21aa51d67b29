"""Prepared sets: annotated samples framed once for the network (fit-width framing, no orientation
check, no aligned pass), their eval-mode logits, and the scoring of those logits.

Training (batches, validation, the prepared-data cache), the K-fold out-of-fold logits and the
temperature fit (calibration.calibrate_loaded) work on prepared sets: the network runs once on a
whole set and the logits are reused.  Evaluation does not: it runs detect's predictor
(detect.LandmarkDetector.observe/decide, see evaluate.py).
"""

from dataclasses import dataclass

import numpy as np
import torch

from ..annotations.datasets import Sample
from ..imaging.geometry import ModelFrame
from ..imaging.images import read_radiograph
from ..network.heatmaps import argmax_2d, decode_points, mask_padding, softmax_2d
from ..network.inputs import model_input
from ..network.model import run_network
from ..uncertainty.levels import LARGE_ERROR_MM
from ..uncertainty.measures import error_probability, expected_radial_error_mm
from .metrics import hits
from .metrics import radial_errors_mm as errors_mm_px


@dataclass
class PreparedSet:
    """Samples preprocessed into model inputs, with what is needed to map results back."""

    ids: list
    inputs: torch.Tensor  # (N, 1, H, W) float16
    uv: torch.Tensor  # (N, L, 2) landmarks in model pixels
    frames: list
    spacings_mm: np.ndarray  # (N, 2)
    landmarks_px: np.ndarray  # (N, L, 2)


def prepare(samples: list[Sample], input_size, desc="preparing") -> PreparedSet:
    from tqdm import tqdm

    inputs, uvs, frames, spacings = [], [], [], []
    for s in tqdm(samples, desc=desc, leave=False, disable=len(samples) < 8):
        rad = read_radiograph(s.image_path, s.spacing_mm)
        x, frame = model_input(rad, input_size)
        inputs.append(x.half())
        uvs.append(torch.as_tensor(frame.image_to_model(s.landmarks_px), dtype=torch.float32))
        frames.append(frame)
        spacings.append(rad.spacing_mm)
    return PreparedSet(
        [s.id for s in samples], torch.stack(inputs), torch.stack(uvs), frames,
        np.array(spacings, dtype=float), np.stack([s.landmarks_px for s in samples]),
    )


def subset(d: PreparedSet, idx) -> PreparedSet:
    """The images at positions `idx` of a PreparedSet, in that order."""
    idx = list(idx)
    t = torch.as_tensor(idx, dtype=torch.long)
    return PreparedSet([d.ids[i] for i in idx], d.inputs[t], d.uv[t], [d.frames[i] for i in idx],
                       d.spacings_mm[idx], d.landmarks_px[idx])


def to_plain(d: PreparedSet) -> dict:
    """A PreparedSet as tensors, lists and numbers only, so a cache of it loads with weights_only=True."""
    return {"ids": list(d.ids), "inputs": d.inputs, "uv": d.uv, "spacings_mm": torch.as_tensor(d.spacings_mm),
            "landmarks_px": torch.as_tensor(d.landmarks_px),
            "frames": [[list(f.image_size), list(f.model_size), list(f.scaled_size), list(f.offset), f.mirror_x]
                       for f in d.frames]}


def from_plain(c: dict) -> PreparedSet:
    frames = [ModelFrame(tuple(a), tuple(b), tuple(s), tuple(o), bool(m)) for a, b, s, o, m in c["frames"]]
    return PreparedSet(list(c["ids"]), c["inputs"], c["uv"], frames, c["spacings_mm"].numpy(),
                       c["landmarks_px"].numpy())


def prepared_logits(net, data: PreparedSet, device) -> torch.Tensor:
    """Eval-mode logits of a prepared set, with each image's padding masked out."""
    return mask_padding(run_network(net, data.inputs, device), data.frames)


def radial_errors_mm(pred_uv: np.ndarray, data) -> np.ndarray:
    """(N, L) radial errors in mm of model-pixel predictions against the ground truth of a
    PreparedSet (or anything with its frames, landmarks_px and spacings_mm: folds.OOFData)."""
    pred_px = np.stack([f.model_to_image(p) for f, p in zip(data.frames, pred_uv, strict=True)])
    return errors_mm_px(pred_px, data.landmarks_px, data.spacings_mm)


@dataclass
class Scored:
    """Per (image, landmark) results of a model on a prepared set."""

    pred_px: np.ndarray  # (N, L, 2)
    errors_mm: np.ndarray  # (N, L)
    ere_mm: np.ndarray  # (N, L)
    confidence: np.ndarray  # (N, L) heatmap maximum
    correct: np.ndarray  # (N, L) true point rounds to the argmax pixel
    p_large: np.ndarray  # (N, L) P(error > LARGE_ERROR_MM) read from the heatmap


def score_logits(logits: torch.Tensor, data, temperatures=None, refine_radius: int = 1) -> Scored:
    """Decode logits (N, L, H, W) of a PreparedSet (or folds.OOFData) and score them."""
    probs = softmax_2d(logits, temperatures)
    uv = decode_points(probs, refine_radius).numpy()
    peak = argmax_2d(probs).numpy()
    correct = hits(peak, data.uv.numpy())
    pred_px = np.stack([f.model_to_image(p) for f, p in zip(data.frames, uv, strict=True)])
    errors = errors_mm_px(pred_px, data.landmarks_px, data.spacings_mm)
    mm = [f.model_pixel_mm(s) for f, s in zip(data.frames, data.spacings_mm, strict=True)]
    ere = np.stack([expected_radial_error_mm(probs[i], uv[i], mm[i]) for i in range(len(mm))])
    p_large = np.stack([error_probability(probs[i], uv[i], mm[i], LARGE_ERROR_MM) for i in range(len(mm))])
    return Scored(pred_px, errors, ere, probs.amax(dim=(2, 3)).numpy(), correct, p_large)
