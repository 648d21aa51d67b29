"""Detection on one radiograph: points, confidence, ERE, flags and credible-region contours."""

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from .errors import CephError
from .geometry import ModelFrame, px_to_lps, px_to_mm
from .heatmaps import decode_points, mask_padding, softmax_2d
from .images import Radiograph, model_input, read_radiograph
from .model import run_network
from .modelfile import LoadedModel, load_model
from .uncertainty import credible_contours, expected_radial_error_mm

CONTOUR_MASSES = (0.5, 0.9)


@dataclass
class LandmarkResult:
    index: int  # 1-based
    name: str
    abbreviation: str
    x_px: float
    y_px: float
    x_mm: float
    y_mm: float
    confidence: float  # the heatmap's maximum probability (calibrated)
    ere_mm: float  # expected radial error
    flagged: bool  # ere_mm above the model's threshold
    contours_px: dict = field(default_factory=dict)  # {"50": [(K, 2) x, y image px], "90": [...]}

    def to_json_dict(self) -> dict:
        keys = ("index", "name", "abbreviation", "x_px", "y_px", "x_mm", "y_mm", "confidence", "ere_mm", "flagged")
        d = {k: getattr(self, k) for k in keys}
        for k in ("x_px", "y_px", "x_mm", "y_mm", "ere_mm"):
            d[k] = round(float(d[k]), 3)
        d["confidence"] = round(float(d["confidence"]), 4)
        d["flagged"] = bool(d["flagged"])
        return d


@dataclass
class Detection:
    image_path: str
    image_size: tuple  # (width, height)
    spacing_mm: tuple
    spacing_source: str
    model: dict  # {"name", "version", "sha256"}
    ere_threshold_mm: float
    landmarks: list
    probs: np.ndarray  # (L, h, w) calibrated heatmaps in model pixels
    frame: ModelFrame
    origin_lps: tuple = (0.0, 0.0, 0.0)
    direction_lps: tuple = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0)
    extra: dict = field(default_factory=dict)  # further JSON sections (e.g. measurements)

    @property
    def points_px(self) -> np.ndarray:
        return np.array([[lm.x_px, lm.y_px] for lm in self.landmarks])

    @property
    def points_lps(self) -> np.ndarray:
        return px_to_lps(self.points_px, self.spacing_mm, self.origin_lps, self.direction_lps)

    def to_json_dict(self) -> dict:
        out = {
            "image": self.image_path,
            "image_size_px": list(self.image_size),
            "spacing_mm": [float(s) for s in self.spacing_mm],
            "spacing_source": self.spacing_source,
            "model": dict(self.model),
            "ere_threshold_mm": round(float(self.ere_threshold_mm), 3),
            "landmarks": [lm.to_json_dict() for lm in self.landmarks],
        }
        if self.spacing_source == "assumed":
            out["warnings"] = ["the image has no pixel spacing; 0.1 mm per pixel was assumed (use --spacing)"]
        out.update(self.extra)
        if "measurements" not in out and len(self.landmarks) == 19:  # the 19 ISBI landmarks
            from .measurement_uncertainty import detection_measurements_json

            out["measurements"] = detection_measurements_json(self)
        return out


class LandmarkDetector:
    """Loads a model file once; `detect` runs it on radiographs."""

    def __init__(self, model_path, device="cpu"):
        self.device = torch.device(device)
        self.model: LoadedModel = load_model(model_path, self.device)
        self.temperatures = torch.tensor(self.model.info.temperatures, dtype=torch.float32)
        if len(self.model.info.temperatures) != len(self.model.info.landmark_names):
            raise CephError(f"{model_path}: {len(self.model.info.temperatures)} temperatures for "
                            f"{len(self.model.info.landmark_names)} landmarks")

    @property
    def info(self):
        return self.model.info

    def heatmaps(self, radiograph: Radiograph):
        """(calibrated probabilities (L, h, w), frame) for one radiograph."""
        x, frame = model_input(radiograph, self.info.input_size)
        logits = mask_padding(run_network(self.model.net, x[None], self.device), [frame])
        return softmax_2d(logits, self.temperatures)[0], frame

    def detect(self, radiograph: Radiograph, contours: bool = True) -> Detection:
        probs, frame = self.heatmaps(radiograph)
        uv = decode_points(probs[None], self.info.refine_radius)[0].numpy()
        xy_px = frame.model_to_image(uv)
        xy_mm = px_to_mm(xy_px, radiograph.spacing_mm)
        ere = expected_radial_error_mm(probs, uv, frame.model_pixel_mm(radiograph.spacing_mm))
        conf = probs.amax(dim=(1, 2)).numpy()
        p = probs.numpy()
        landmarks = []
        for i, (name, abbr) in enumerate(zip(self.info.landmark_names, self.info.landmark_abbreviations)):
            cont = {}
            if contours:
                cont = {k: [frame.model_to_image(c) for c in lines]
                        for k, lines in credible_contours(p[i], CONTOUR_MASSES).items()}
            landmarks.append(LandmarkResult(
                i + 1, name, abbr, float(xy_px[i, 0]), float(xy_px[i, 1]), float(xy_mm[i, 0]), float(xy_mm[i, 1]),
                float(conf[i]), float(ere[i]), bool(ere[i] > self.info.ere_threshold_mm), cont,
            ))
        return Detection(
            radiograph.path, radiograph.size, tuple(radiograph.spacing_mm), radiograph.spacing_source,
            {"name": self.info.name, "version": self.info.version, "sha256": self.model.sha256},
            self.info.ere_threshold_mm, landmarks, p, frame, radiograph.origin_lps, radiograph.direction_lps,
        )


def detect_files(paths, model_path, out_dir, spacing_mm=None, device="cpu", on_error=None) -> list:
    """The CLI's detect: NAME.json, NAME.mrk.json and NAME.png per image; returns the paths written.

    Each output file is written atomically.  A bad image is reported through
    `on_error(message)` and skipped; if any failed, CephError is raised at the end.
    """
    from .outputs import write_detection

    stems = [Path(p).name.split(".")[0] for p in paths]
    if len(set(stems)) != len(stems):
        raise CephError("two input images have the same name; their outputs would overwrite each other")
    detector = LandmarkDetector(model_path, device)
    written, failed = [], []
    for stem, path in zip(stems, paths):
        try:
            rad = read_radiograph(path, spacing_mm)
            written += write_detection(detector.detect(rad), rad, Path(out_dir), stem)
        except CephError as e:
            failed.append(str(path))
            if on_error is None or len(paths) == 1:
                raise
            on_error(str(e))
    if failed:
        raise CephError(f"{len(failed)} of {len(paths)} images failed: {', '.join(failed)}")
    return written
