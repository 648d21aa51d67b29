"""The refiner's held-out set: the base model's real predictions on images it did not train on,
the full-resolution crops centred on them, and the scoring of a refiner there.

The base model runs once (prepared.py's path: fit framing, its own temperatures); its errors
give the training jitter, its points centre the crops, its maps make the combined map with
the refiner's (detection/combined_map.py), so the held-out figures are those of detection.
"""

from dataclasses import dataclass

import numpy as np
import torch

from ..detection.combined_map import combine
from ..imaging.crops import CropFrame, crop_frames
from ..network.crop_inputs import sample_crops
from ..network.heatmaps import decode_points, heatmap_nll, softmax_2d
from .prepared import prepare, prepared_logits
from .refiner_data import read_normalised

TEMPERATURE_GRID = np.exp(np.linspace(np.log(0.3), np.log(5.0), 49))


@dataclass
class HoldoutSet:
    ids: list
    crops: torch.Tensor  # (N, L, 1, S, S) float16, centred on the coarse points
    truth_crop: torch.Tensor  # (N, L, 2) true points in crop pixels
    frames: np.ndarray  # (N, L, 7) CropFrame.to_array rows
    truth_px: np.ndarray  # (N, L, 2)
    coarse_px: np.ndarray  # (N, L, 2) the base model's points
    spacings_mm: np.ndarray  # (N, 2)
    coarse_probs: torch.Tensor  # (N, L, H, W) float16, the base model's calibrated maps
    model_to_image: np.ndarray  # (N, 3, 3)

    @property
    def errors_mm(self) -> np.ndarray:
        """(N, L, 2) the base model's errors (prediction - truth), mm along the image axes."""
        return (self.coarse_px - self.truth_px) * self.spacings_mm[:, None]

    @property
    def coarse_mre_mm(self) -> float:
        return float(np.hypot(*np.moveaxis(self.errors_mm, -1, 0)).mean())

    def to_plain(self) -> dict:
        return {k: (torch.as_tensor(v) if isinstance(v, np.ndarray) else v) for k, v in self.__dict__.items()}

    @classmethod
    def from_plain(cls, c: dict) -> "HoldoutSet":
        return cls(**{k: (v.numpy() if isinstance(v, torch.Tensor) and k not in ("crops", "truth_crop",
                                                                                   "coarse_probs") else v)
                      for k, v in c.items()})

    @torch.no_grad()
    def logits(self, net) -> torch.Tensor:
        """(N, L, S, S) the refiner's logits on every held-out crop (one image's 19 crops a forward)."""
        net.eval()
        n_landmarks = self.crops.shape[1]
        return torch.stack([net(c.float(), torch.arange(n_landmarks)) for c in self.crops])

    def evaluate(self, net, temperatures=None, combined: bool = False) -> dict:
        """NLL and MRE (mm) of the fine points on the held-out crops; with combined=True also the
        combined map's points (fine only where the coarse mass lies mostly inside the crop)."""
        logits = self.logits(net)
        nll = float(heatmap_nll(logits, self.truth_crop, temperatures))
        probs = softmax_2d(logits, temperatures)
        uv = decode_points(probs).numpy()
        frames = [[CropFrame.from_array(a) for a in row] for row in self.frames]
        fine_px = np.stack([[f.crop_to_image(p) for f, p in zip(row, pts, strict=True)]
                            for row, pts in zip(frames, uv, strict=True)])
        fine_err = np.hypot(*np.moveaxis((fine_px - self.truth_px) * self.spacings_mm[:, None], -1, 0))
        size = self.crops.shape[-1]
        inside = ((self.truth_crop >= 0) & (self.truth_crop <= size - 1)).all(-1).numpy()
        out = {"nll": nll, "fine_mre_mm": float(fine_err.mean()),
               "fine_mre_inside_mm": float(fine_err[inside].mean()) if inside.any() else None,
               "inside_percent": float(inside.mean() * 100),
               "fine_mre_per_landmark_mm": np.round(fine_err.mean(0), 3).tolist()}
        if combined:
            pts, refined = [], []
            for i, row in enumerate(frames):
                cm = combine(self.coarse_probs[i].float().numpy(), self.model_to_image[i], self.spacings_mm[i],
                             probs[i].numpy(), row, self.coarse_px[i])
                pts.append(cm.points_px)
                refined.append(cm.refined)
            err = np.hypot(*np.moveaxis((np.stack(pts) - self.truth_px) * self.spacings_mm[:, None], -1, 0))
            coarse = np.hypot(*np.moveaxis(self.errors_mm, -1, 0))
            out.update(combined_mre_mm=float(err.mean()), refined_percent=float(np.mean(refined) * 100),
                       coarse_mre_mm=float(coarse.mean()),
                       combined_mre_per_landmark_mm=np.round(err.mean(0), 3).tolist(),
                       coarse_mre_per_landmark_mm=np.round(coarse.mean(0), 3).tolist(),
                       sdr2_coarse_percent=float((coarse <= 2).mean() * 100),
                       sdr2_combined_percent=float((err <= 2).mean() * 100))
        return out


def prepare_holdout(base, samples, crop: int, mm_per_px: float) -> HoldoutSet:
    """Run the base model on the held-out samples and cut the crops around its points."""
    info = base.info
    data = prepare(samples, info.input_size, "first stage on the held-out images")
    temps = torch.tensor(info.temperatures, dtype=torch.float32) if info.temperatures else None
    probs = softmax_2d(prepared_logits(base.net, data, "cpu"), temps)
    uv = decode_points(probs, info.refine_radius).numpy()
    coarse_px = np.stack([f.model_to_image(p) for f, p in zip(data.frames, uv, strict=True)])
    crops, truth_crop, frames = [], [], []
    for s, pts in zip(samples, coarse_px, strict=True):
        image, spacing = read_normalised(s)
        fr = crop_frames(pts, spacing, (crop, crop), mm_per_px)
        crops.append(sample_crops(torch.as_tensor(image), fr).half())
        truth_crop.append(np.stack([f.image_to_crop(t) for f, t in zip(fr, s.landmarks_px, strict=True)]))
        frames.append(np.stack([f.to_array() for f in fr]))
    return HoldoutSet(list(data.ids), torch.stack(crops), torch.as_tensor(np.stack(truth_crop), dtype=torch.float32),
                      np.stack(frames), np.asarray(data.landmarks_px, dtype=np.float64), coarse_px,
                      np.asarray(data.spacings_mm, dtype=np.float64), probs.half(),
                      np.stack([f.model_to_image_matrix() for f in data.frames]))


def fit_temperatures(net, hold: HoldoutSet) -> np.ndarray:
    """(L,) per landmark, the grid temperature of least NLL of the true points on the held-out crops."""
    logits = hold.logits(net)
    n, n_landmarks = logits.shape[:2]
    grid = torch.as_tensor(TEMPERATURE_GRID, dtype=torch.float32)
    best = []
    for lm in range(n_landmarks):  # every grid temperature at once: the crops repeated once per temperature
        lg = logits[:, lm:lm + 1].expand(-1, len(grid), -1, -1)
        uv = hold.truth_crop[:, lm:lm + 1].expand(-1, len(grid), -1)
        nll = heatmap_nll(lg, uv, grid, reduce=False).mean(0)
        best.append(TEMPERATURE_GRID[int(torch.argmin(nll))])
    return np.array(best)
