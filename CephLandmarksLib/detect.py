"""Detection on one radiograph: points, confidence, ERE, flags and credible-region contours.

Framing: with a known pixel spacing the image is resampled to the model's own mm per
pixel ("physical"); with an assumed one it is fitted to the model's width ("fit-width").
Orientation: unless switched off, the network also runs on the mirrored image, and the
orientation with the higher mean confidence is used ("left-facing" = mirrored).
Landmarks outside the image are reported missing (coordinates None) and flagged.
Alignment: when the confident landmarks sit far from their training positions in the
canvas, the image is moved and run again (alignment.py).  Shape check: a landmark over
25 mm from where the confident ones put it is flagged, and reported missing when that
place is outside the image.  A point within 4 mm of the image's edge is flagged (the
anatomy may be cut off there).  The JSON's "alignment" records all three.
"""

from pathlib import Path

import numpy as np
import torch

from .errors import CephError
from .detection import LEFT_FACING, RIGHT_FACING, Detection, LandmarkResult
from .geometry import ModelFrame, px_to_mm, to_model_input
from .heatmaps import decode_points, mask_padding, softmax_2d
from .images import Radiograph, framing_for, model_input, read_radiograph
from .alignment import realigned_frame, reference_uv, shape_check
from .images import normalise
from .missing import missing_landmarks, near_edge, outside_mass
from .model import run_network
from .modelfile import LoadedModel, load_model, model_mm_per_px
from .uncertainty import LARGE_ERROR_MM, credible_contours, error_probability, expected_radial_error_mm

CONTOUR_MASSES = (0.5, 0.9)


class LandmarkDetector:
    """Loads a model file once; `detect` runs it on radiographs."""

    def __init__(self, model_path, device="cpu", orientation_check: bool = True, align: bool = True):
        self.device = torch.device(device)
        self.orientation_check = orientation_check
        self.align = align
        self.model: LoadedModel = load_model(model_path, self.device)
        self.temperatures = torch.tensor(self.model.info.temperatures, dtype=torch.float32)
        if len(self.model.info.temperatures) != len(self.model.info.landmark_names):
            raise CephError(f"{model_path}: {len(self.model.info.temperatures)} temperatures for "
                            f"{len(self.model.info.landmark_names)} landmarks")

    @property
    def info(self):
        return self.model.info

    @property
    def mm_per_px(self) -> float:
        return model_mm_per_px(self.info)

    def _forward(self, radiograph: Radiograph, mirror_x: bool = False):
        """(calibrated probabilities (L, h, w), frame, probability outside the image (L,))."""
        x, frame = model_input(radiograph, self.info.input_size, self.mm_per_px, mirror_x)
        return self._run(x, frame)

    def _run(self, x, frame: ModelFrame):
        raw = run_network(self.model.net, x[None], self.device)
        outside = outside_mass(raw[0], frame.image_mask(), self.temperatures)
        return softmax_2d(mask_padding(raw, [frame]), self.temperatures)[0], frame, outside

    def heatmaps(self, radiograph: Radiograph, mirror_x: bool = False):
        """(calibrated probabilities (L, h, w), frame) for one radiograph."""
        probs, frame, _ = self._forward(radiograph, mirror_x)
        return probs, frame

    def oriented_forward(self, radiograph: Radiograph, orientation_check=None):
        """(probs, frame, outside, orientation): the mirrored image is used when its mean confidence is higher."""
        check = self.orientation_check if orientation_check is None else orientation_check
        result = self._forward(radiograph, False)
        if check:
            mirrored = self._forward(radiograph, True)
            if mean_confidence(mirrored[0]) > mean_confidence(result[0]):
                return (*mirrored, LEFT_FACING)
        return (*result, RIGHT_FACING)

    def _decode(self, probs, frame, outside, spacing_mm):
        """(uv, confidence, missing, ERE, ERE over the model's threshold) of one pass."""
        uv = decode_points(probs[None], self.info.refine_radius)[0].numpy()
        conf = probs.amax(dim=(1, 2)).numpy()
        missing = missing_landmarks(uv, frame, outside, conf)
        ere = expected_radial_error_mm(probs, uv, frame.model_pixel_mm(spacing_mm))
        return uv, conf, missing, ere, ere > self.info.ere_threshold_mm

    def aligned_pass(self, radiograph: Radiograph, probs, frame, outside):
        """A second pass on a frame that puts the anatomy where training had it; None if not needed
        or not better (mean confidence)."""
        uv, _, missing, _, uncertain = self._decode(probs, frame, outside, radiograph.spacing_mm)
        ref = reference_uv(self.info, self.mm_per_px)
        moved = realigned_frame(frame, uv, ref, ~missing & ~uncertain, allow_scale=False)
        if moved is None:
            return None
        again = self._run(to_model_input(normalise(radiograph.pixels), moved), moved)
        return again if mean_confidence(again[0]) >= mean_confidence(probs) else None

    def detect(self, radiograph: Radiograph, contours: bool = True, orientation_check=None) -> Detection:
        probs, frame, outside, orientation = self.oriented_forward(radiograph, orientation_check)
        framing = framing_for(radiograph, self.mm_per_px)
        alignment = {}
        if self.align:
            again = self.aligned_pass(radiograph, probs, frame, outside)
            if again is not None:
                alignment = {"shift_model_px": [int(a - b) for a, b in zip(again[1].offset, frame.offset)]}
                probs, frame, outside = again
        uv, conf, missing, ere, uncertain = self._decode(probs, frame, outside, radiograph.spacing_mm)
        # Only for the kept pass (not in aligned_pass's look at the first one): shown, never used to decide.
        p_large = error_probability(probs, uv, frame.model_pixel_mm(radiograph.spacing_mm), LARGE_ERROR_MM)
        implausible, expected_outside = shape_check(
            uv, reference_uv(self.info, self.mm_per_px), ~missing & ~uncertain, frame, self.mm_per_px)
        missing = missing | (implausible & expected_outside)
        edge = ~missing & near_edge(uv, frame, frame.model_pixel_mm(radiograph.spacing_mm))
        flagged = missing | implausible | uncertain | edge
        xy_px = frame.model_to_image(uv)
        xy_px[missing] = np.nan
        xy_mm = px_to_mm(xy_px, radiograph.spacing_mm)
        p = probs.numpy()
        landmarks = []
        for i, (name, abbr) in enumerate(zip(self.info.landmark_names, self.info.landmark_abbreviations)):
            cont = {}
            if contours and not missing[i]:
                cont = {k: [frame.model_to_image(c) for c in lines]
                        for k, lines in credible_contours(p[i], CONTOUR_MASSES).items()}
            landmarks.append(LandmarkResult(
                i + 1, name, abbr, float(xy_px[i, 0]), float(xy_px[i, 1]), float(xy_mm[i, 0]), float(xy_mm[i, 1]),
                float(conf[i]), float(ere[i]), bool(flagged[i]), cont,
                bool(missing[i]), float(p_large[i]),
            ))
        if implausible.any():
            alignment = dict(alignment, implausible=[self.info.landmark_abbreviations[i]
                                                     for i in np.nonzero(implausible)[0]])
        if edge.any():
            alignment = dict(alignment, near_edge=[self.info.landmark_abbreviations[i] for i in np.nonzero(edge)[0]])
        return Detection(
            radiograph.path, radiograph.size, tuple(radiograph.spacing_mm), radiograph.spacing_source,
            {"name": self.info.name, "version": self.info.version, "sha256": self.model.sha256},
            self.info.ere_threshold_mm, landmarks, p, frame, radiograph.origin_lps, radiograph.direction_lps,
            framing=framing, orientation=orientation, alignment=alignment,
        )


def mean_confidence(probs: torch.Tensor) -> float:
    """Mean over landmarks of each calibrated map's maximum: the orientation check's score."""
    return float(probs.amax(dim=(1, 2)).mean())
