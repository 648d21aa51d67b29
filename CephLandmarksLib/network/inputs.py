"""Radiograph -> network input: the one place that frames a radiograph in the model's canvas,
normalises its intensities and resamples it.  Detection, training and adaptation all go through it.

Framing (imaging.geometry's conventions): with the model's mm per pixel and a known spacing the
image is resampled to the model's scale, centred (`physical`); otherwise it is scaled to fit the
canvas, padded right and bottom (`fit`, as in training).  A left-facing radiograph is seen
mirrored (`mirror_x`).  The intensities are normalised once per radiograph (ModelInput), however
many passes (orientation check, aligned pass) the predictor makes.
"""

from functools import cached_property

import numpy as np
import torch
import torch.nn.functional as F

from ..imaging.geometry import FRAMING_FIT, FRAMING_PHYSICAL, ModelFrame
from ..imaging.images import Radiograph, normalise


def framing_for(radiograph: Radiograph, model_mm_per_px=None) -> str:
    """Physical framing when the spacing is known (not "assumed") and the model has a scale."""
    if model_mm_per_px is None or radiograph.spacing_source == "assumed":
        return FRAMING_FIT
    return FRAMING_PHYSICAL


def model_frame(radiograph: Radiograph, model_size, model_mm_per_px=None, mirror_x=False) -> ModelFrame:
    """Where the radiograph sits in the canvas of model_size (width, height)."""
    if framing_for(radiograph, model_mm_per_px) == FRAMING_PHYSICAL:
        return ModelFrame.physical(radiograph.size, radiograph.spacing_mm, model_size, model_mm_per_px, mirror_x)
    return ModelFrame.fit(radiograph.size, model_size).mirrored(mirror_x)


def to_model_input(pixels: np.ndarray, frame: ModelFrame) -> torch.Tensor:
    """Normalised image (H, W) -> model input tensor (1, mh, mw): antialiased resize into the canvas."""
    return in_canvas(scaled_image(pixels, frame), frame)


def scaled_image(pixels: np.ndarray, frame: ModelFrame) -> torch.Tensor:
    """The image (H, W), mirrored if the frame says so, resized (antialiased) to the frame's scaled
    size: (1, 1, sh, sw).  Frames that differ only in their offset share it."""
    src = np.asarray(pixels)[:, ::-1] if frame.mirror_x else np.asarray(pixels)
    t = torch.as_tensor(np.ascontiguousarray(src), dtype=torch.float32)[None, None]
    sw, sh = frame.scaled_size
    return F.interpolate(t, size=(sh, sw), mode="bilinear", antialias=True, align_corners=False)


def in_canvas(scaled: torch.Tensor, frame: ModelFrame) -> torch.Tensor:
    """The scaled image (1, 1, sh, sw) placed at the frame's offset in the canvas: (1, mh, mw)."""
    mw, mh = frame.model_size
    canvas = torch.zeros((1, mh, mw), dtype=torch.float32)
    ox, oy = frame.offset
    (u0, u1), (v0, v1) = frame.visible_box()
    if u1 > u0 and v1 > v0:
        canvas[0, v0:v1, u0:u1] = scaled[0, 0, v0 - oy : v1 - oy, u0 - ox : u1 - ox]
    return canvas


class ModelInput:
    """One radiograph ready for the network: normalised once, framed and resampled per pass.

    model_size (width, height) and model_mm_per_px choose the framing (see framing_for); a pass
    on a frame chosen elsewhere (the aligned pass, adaptation) needs only `tensor(frame)`.
    """

    def __init__(self, radiograph: Radiograph, model_size=None, model_mm_per_px=None):
        self.radiograph = radiograph
        self.model_size = model_size
        self.model_mm_per_px = model_mm_per_px

    @cached_property
    def normalised(self) -> np.ndarray:
        return normalise(self.radiograph.pixels)

    @property
    def framing(self) -> str:
        return framing_for(self.radiograph, self.model_mm_per_px)

    def frame(self, mirror_x: bool = False) -> ModelFrame:
        if self.model_size is None:
            raise ValueError("ModelInput.frame needs the model's input size")
        return model_frame(self.radiograph, self.model_size, self.model_mm_per_px, mirror_x)

    def tensor(self, frame: ModelFrame) -> torch.Tensor:
        """(1, mh, mw) input for the network on this frame.  The resized image is kept for the
        radiograph's last scaled size and mirroring: the aligned pass moves the frame, and with a
        known spacing does not rescale it, so it needs no second resize."""
        key = (tuple(frame.scaled_size), bool(frame.mirror_x))
        if getattr(self, "_scaled_key", None) != key:
            self._scaled, self._scaled_key = scaled_image(self.normalised, frame), key
        return in_canvas(self._scaled, frame)

    def __call__(self, mirror_x: bool = False):
        """(input tensor (1, mh, mw), frame) of the model's own framing."""
        frame = self.frame(mirror_x)
        return self.tensor(frame), frame


def model_input(radiograph: Radiograph, model_size, model_mm_per_px=None, mirror_x=False):
    """(model input tensor (1, H, W), ModelFrame) of one radiograph: see ModelInput."""
    return ModelInput(radiograph, model_size, model_mm_per_px)(mirror_x)
