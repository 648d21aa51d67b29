"""Detection on one radiograph: points, confidence, ERE, flags and credible-region contours.

Framing: with a known pixel spacing the image is resampled to the model's own mm per
pixel ("physical"); with an assumed one it is fitted to the model's width ("fit-width").
Orientation: unless switched off, the network also runs on the mirrored image, and the
orientation with the higher mean confidence is used ("left-facing" = mirrored); not when the
first pass is clearly right-facing (orientation.py).
Landmarks outside the image are reported missing (coordinates None) and flagged; not those the
confident landmarks place well inside (missing.py).
Alignment: when the confident landmarks sit far from their training positions in the
canvas, the image is moved and run again (alignment.py).  Shape check: a landmark over
25 mm from where the confident ones put it is flagged, and reported missing when that
place is outside the image.  A point within 4 mm of the image's edge is flagged (the
anatomy may be cut off there).  The JSON's "alignment" records all three.
Credible-region contours are computed when first read (something draws them: uncertainty/regions.py).
Second stage (a refiner, `detect --refine`): observe also runs the refiner on full-resolution crops
centred on the kept pass's points (refinement.py), and decide reads the combined coarse + fine map
(combined_map.py) for the points, ERE, P(error > 4 mm), the regions and the measurement intervals;
a point whose coarse mass lies mostly outside its crop keeps the coarse point, flagged "outside_crop".
"""

from dataclasses import dataclass, field, replace
from functools import partial
from pathlib import Path

import numpy as np
import torch

from ..errors import CephError
from ..imaging.geometry import FRAMING_PHYSICAL, ModelFrame, frame_landmarks, px_to_mm, shifts_uv
from ..imaging.images import Radiograph
from ..network.heatmaps import decode_points, mask_padding, shift_maps, softmax_2d
from ..network.inputs import ModelInput
from ..network.model import run_network
from ..store.modelfile import LoadedModel, load_model, model_mm_per_px
from ..store.refinerfile import LoadedRefiner, load_refiner
from ..store.registry import default_model_path
from ..uncertainty.conformal import masses_for
from ..uncertainty.flag_score import image_adjusted_p_large
from ..uncertainty.measures import (
    LARGE_ERROR_MM,
    error_probability,
    expected_radial_error_mm,
    region_extent,
)
from ..uncertainty.regions import LazyContours, drawn_regions
from . import combined_map as cmap
from .alignment import SHAPE_LIMIT_MM, expected_places, realigned_frame, reference_uv, shape_check
from .missing import best_mode_near, missing_landmarks, near_edge, outside_mass, placed_inside
from .orientation import orientation_clear
from .refinement import crops_for, fine_logits, fine_maps
from .result import (
    FLAG_IMPLAUSIBLE,
    FLAG_MISSING,
    FLAG_NEAR_EDGE,
    FLAG_OUTSIDE_CROP,
    FLAG_UNCERTAIN,
    LEFT_FACING,
    RIGHT_FACING,
    Detection,
    LandmarkResult,
)

REACH_LEVEL = "90"  # the region whose area and reach the JSON reports per point


@dataclass
class Settings:
    """What turns the network's logits into a detection, and what calibration and clinic
    adaptation refit: temperatures, the flag threshold, region masses, convention offsets."""

    temperatures: np.ndarray  # (L,)
    ere_threshold_mm: float
    region_masses: dict  # {"50": (L,), "90": (L,)} (conformal.masses_for)
    offsets_mm: np.ndarray | None = None  # (L, 2) head-frame offsets (conventions.py)
    regions: str = "nominal"  # how the masses were chosen: "nominal" or "split-conformal"
    flag_p_large_min: float | None = None  # flag P(error > 4 mm) >= this instead of ERE > ere_threshold_mm
    flag_image_weight: float = 0.0  # ... that P adjusted for the image's other landmarks (image_adjusted_p_large)
    fine_temperature_scale: float = 1.0  # a clinic's factor on the second stage's temperatures (adaptation.py)

    def flag_rule(self) -> dict:
        if self.flag_p_large_min is None:
            return {"score": "ere_mm", "threshold": round(float(self.ere_threshold_mm), 4)}
        return {"score": "p_large_error", "threshold": float(self.flag_p_large_min),
                **({"image_weight": float(self.flag_image_weight)} if self.flag_image_weight else {})}

    def uncertain(self, ere_mm, p_large, missing=None) -> np.ndarray:
        """The points (..., L) of one or more images that this flag rule calls uncertain; `missing`
        points (outside the image) do not weigh on their image's others."""
        if self.flag_p_large_min is None:
            return np.asarray(ere_mm) > self.ere_threshold_mm
        counted = None if missing is None else ~np.asarray(missing, dtype=bool)
        return image_adjusted_p_large(p_large, self.flag_image_weight, counted) >= self.flag_p_large_min

    @classmethod
    def of(cls, info) -> "Settings":
        n = len(info.landmark_names)
        return cls(np.asarray(info.temperatures, dtype=np.float64), float(info.ere_threshold_mm),
                   masses_for(info.region_masses or {}, n),
                   None if info.convention_offsets_mm is None else np.asarray(info.convention_offsets_mm, float),
                   "split-conformal" if info.region_masses else "nominal", info.flag_p_large_min,
                   float(info.flag_image_weight or 0.0), float(info.refiner_temperature_scale or 1.0))

    def for_two_stages(self, info, refiner: LoadedRefiner | None) -> "Settings":
        """The settings with a second stage: the refiner's flag threshold and region masses, fitted on
        the combined map (training/refiner_calibration.py), replace the first stage's, unless the
        model's own were fitted with this very refiner (a clinic adaptation run with it) or the
        refiner has none.  Temperatures and convention offsets stay the model's."""
        fitted_with = (info.adaptation or {}).get("refiner_sha256")
        if refiner is None or refiner.info.ere_threshold_mm is None or fitted_with == refiner.sha256:
            return self
        masses = refiner.info.region_masses
        return replace(self, ere_threshold_mm=float(refiner.info.ere_threshold_mm),
                       region_masses=masses_for(masses, len(info.landmark_names)),
                       regions="split-conformal" if masses else "nominal", flag_p_large_min=None,
                       flag_image_weight=0.0)


@dataclass
class FineObservation:
    """What the refiner made of one radiograph: its logits over each landmark's crop (off-image crop
    pixels masked) and the crops, centred on the kept pass's points at the model's own temperatures."""

    logits: torch.Tensor  # (L, h, w)
    crops: list  # L imaging.crops.CropFrame


@dataclass
class Observation:
    """What the network made of one radiograph, before any calibration choice: the raw logits of
    the pass kept (orientation check and alignment done) and where the image sat."""

    logits: torch.Tensor  # (L, h, w), padding not masked
    frame: ModelFrame
    orientation: str
    alignment: dict  # {"shift_model_px": [du, dv]} when an aligned second pass was kept
    framing: str
    image: dict = field(default_factory=dict)  # path, size, spacing_mm, spacing_source, origin_lps, direction_lps
    fine: FineObservation | None = None  # the second stage's, when the detector has a refiner


class LandmarkDetector:
    """Loads a model file once; `detect` runs it on radiographs.

    detect = decide(observe(radiograph)): `observe` runs the network, `decide` applies the
    Settings.  Evaluation and adaptation call the same two, so a figure measured there is
    a figure of what detect produces.
    """

    def __init__(self, model_path=None, device="cpu", orientation_check: bool = True, align: bool = True,
                 refiner=None):
        """model_path: a model file; None takes the shipped default (store.registry.default_model_path).
        refiner: the second stage (a refiner file or a LoadedRefiner), for this model's landmarks; None: none."""
        if model_path is None:
            model_path = default_model_path()
        self.device = torch.device(device)
        self.orientation_check = orientation_check
        self.align = align
        self.model: LoadedModel = load_model(model_path, self.device)
        if len(self.model.info.temperatures) != len(self.model.info.landmark_names):
            raise CephError(f"{model_path}: {len(self.model.info.temperatures)} temperatures for "
                            f"{len(self.model.info.landmark_names)} landmarks")
        self.settings = Settings.of(self.model.info)
        self.temperatures = torch.tensor(self.model.info.temperatures, dtype=torch.float32)
        self.refiner: LoadedRefiner | None = None
        if refiner is not None:
            self.refiner = refiner if isinstance(refiner, LoadedRefiner) else load_refiner(refiner, self.device)
            ours = list(self.info.landmark_abbreviations or self.info.landmark_names)
            if list(self.refiner.info.landmark_abbreviations) != ours:
                raise CephError(f"the refiner {self.refiner.path or 'given'} was trained for other landmarks "
                                f"({len(self.refiner.info.landmark_abbreviations)}) than the model {model_path} "
                                f"gives ({len(ours)})")
            self.settings = self.settings.for_two_stages(self.info, self.refiner)

    @property
    def info(self):
        return self.model.info

    @property
    def mm_per_px(self) -> float:
        return model_mm_per_px(self.info)

    def inputs(self, radiograph) -> ModelInput:
        """The radiograph as this model's input (normalised once for all passes); a ModelInput passes through."""
        if isinstance(radiograph, ModelInput):
            return radiograph
        return ModelInput(radiograph, self.info.input_size, self.mm_per_px)

    def _forward(self, radiograph, mirror_x: bool = False):
        """(calibrated probabilities (L, h, w), frame, probability outside the image (L,), raw logits)."""
        return self._run(*self.inputs(radiograph)(mirror_x))

    def _run(self, x, frame: ModelFrame):
        raw = run_network(self.model.net, x[None], self.device)
        outside = outside_mass(raw[0], frame.image_mask(), self.temperatures)
        return softmax_2d(mask_padding(raw, [frame]), self.temperatures)[0], frame, outside, raw[0]

    def heatmaps(self, radiograph: Radiograph | ModelInput, mirror_x: bool = False):
        """(calibrated probabilities (L, h, w), frame) for one radiograph."""
        probs, frame, _, _ = self._forward(radiograph, mirror_x)
        return probs, frame

    def oriented_forward(self, radiograph: Radiograph | ModelInput, orientation_check=None):
        """(probs, frame, outside, raw logits, orientation): the mirrored image is used when its mean
        confidence is higher; it is not tried when the first pass is clearly right-facing."""
        result, orientation, _ = self._oriented(self.inputs(radiograph), orientation_check)
        return (*result, orientation)

    def _oriented(self, inputs: ModelInput, orientation_check=None):
        """((probs, frame, outside, raw), orientation, the kept pass's _decode or None)."""
        check = self.orientation_check if orientation_check is None else orientation_check
        result = self._forward(inputs, False)
        decoded = None
        if check:
            decoded = self._decode(*result[:3], inputs.radiograph.spacing_mm, self.info.ere_threshold_mm)
            uv, _, missing, _, uncertain = decoded
            ref = reference_uv(self.info, self.mm_per_px)
            if not orientation_clear(mean_confidence(result[0]), uv, ref, ~missing & ~uncertain, self.mm_per_px):
                mirrored = self._forward(inputs, True)
                if mean_confidence(mirrored[0]) > mean_confidence(result[0]):
                    return mirrored, LEFT_FACING, None
        return result, RIGHT_FACING, decoded

    def _decode(self, probs, frame, outside, spacing_mm, threshold_mm, with_ere: bool = True):
        """(uv, confidence, missing, ERE, ERE over the threshold) of one pass (ERE None unless with_ere)."""
        uv = decode_points(probs[None], self.info.refine_radius)[0].numpy()
        conf = probs.amax(dim=(1, 2)).numpy()
        missing = missing_landmarks(uv, frame, outside, conf)
        if not with_ere:
            return uv, conf, missing, None, None
        ere = expected_radial_error_mm(probs, uv, frame.model_pixel_mm(spacing_mm))
        return uv, conf, missing, ere, ere > threshold_mm

    def aligned_pass(self, radiograph: Radiograph | ModelInput, probs, frame, outside, decoded=None):
        """A second pass on a frame that puts the anatomy where training had it; None if not needed
        or not better (mean confidence).  decoded: this pass's _decode, when already at hand."""
        inputs = self.inputs(radiograph)
        uv, _, missing, _, uncertain = decoded or self._decode(probs, frame, outside, inputs.radiograph.spacing_mm,
                                                               self.info.ere_threshold_mm)
        ref = reference_uv(self.info, self.mm_per_px)
        moved = realigned_frame(frame, uv, ref, ~missing & ~uncertain, allow_scale=False)
        if moved is None:
            return None
        again = self._run(inputs.tensor(moved), moved)
        return again if mean_confidence(again[0]) >= mean_confidence(probs) else None

    def observe(self, radiograph: Radiograph | ModelInput, orientation_check=None) -> Observation:
        """Run the network: orientation check, then an aligned second pass when it helps."""
        return self._observe(radiograph, orientation_check)[0]

    def _observe(self, radiograph, orientation_check=None):
        """(Observation, (calibrated maps, mass outside, its _decode or None) of its kept pass at the
        model's temperatures)."""
        inputs = self.inputs(radiograph)
        (probs, frame, outside, raw), orientation, decoded = self._oriented(inputs, orientation_check)
        alignment = {}
        if self.align:
            decoded = decoded or self._decode(probs, frame, outside, inputs.radiograph.spacing_mm,
                                              self.info.ere_threshold_mm)
            again = self.aligned_pass(inputs, probs, frame, outside, decoded)
            if again is not None:
                alignment = {"shift_model_px": [int(a - b) for a, b in zip(again[1].offset, frame.offset, strict=True)]}
                (probs, frame, outside, raw), decoded = again, None
        rad = inputs.radiograph
        image = {"path": rad.path, "size": rad.size, "spacing_mm": tuple(rad.spacing_mm),
                 "spacing_source": rad.spacing_source, "origin_lps": rad.origin_lps, "direction_lps": rad.direction_lps}
        fine = self._observe_fine(inputs, probs, frame) if self.refiner is not None else None
        return Observation(raw, frame, orientation, alignment, inputs.framing, image, fine), (probs, outside, decoded)

    def _observe_fine(self, inputs: ModelInput, probs, frame: ModelFrame) -> FineObservation:
        """The refiner on crops centred on the points of the kept pass (its calibrated maps), all 19 in one
        forward, on the normalised image the coarse pass saw; with an assumed spacing, at the scale that
        pass gave the image (refinement.crops_for)."""
        uv = decode_points(probs[None], self.info.refine_radius)[0].numpy()
        believed = None if inputs.framing == FRAMING_PHYSICAL else self.mm_per_px * np.asarray(frame.scale, float)
        crops = crops_for(self.refiner, frame.model_to_image(uv), inputs.radiograph.spacing_mm, frame.mirror_x,
                          believed)
        return FineObservation(fine_logits(self.refiner, inputs.normalised, crops, self.device), crops)

    def decide(self, obs: Observation, settings: Settings | None = None, contours: bool = True,
               extents: bool = True, calibrated=None) -> Detection:
        """The detection the settings (default: the model's own) make of an observation.

        contours=False / extents=False skip the region contours / the region's area and reach
        (evaluation loops that need neither).  The contours are computed when first read.
        calibrated: (maps, mass outside[, their _decode]) of the observation at the model's own
        temperatures, when observe made them (detect), used only when the settings keep those temperatures."""
        s = settings or self.settings
        frame, spacing = obs.frame, obs.image["spacing_mm"]
        temps = torch.as_tensor(s.temperatures, dtype=torch.float32)
        decoded = None
        if calibrated is not None and torch.equal(temps, self.temperatures):
            probs, outside = calibrated[:2]
            decoded = calibrated[2] if len(calibrated) > 2 else None
        else:
            probs = softmax_2d(mask_padding(obs.logits[None], [frame]), temps)[0]
            outside = outside_mass(obs.logits, frame.image_mask(), temps)
        mm = frame.model_pixel_mm(spacing)
        uv, conf, missing, _, _ = decoded or self._decode(probs, frame, outside, spacing, s.ere_threshold_mm,
                                                          with_ere=False)
        cm = self._combined(obs, probs, uv, missing, s.fine_temperature_scale) if obs.fine is not None else None
        if cm is not None:
            uv = frame.image_to_model(cm.points_px)
        if s.offsets_mm is not None:  # clinic conventions: move each point and its whole map
            shift = shifts_uv(uv, s.offsets_mm, mm, *frame_landmarks(self.info.landmark_abbreviations))
            probs, moved = shift_maps(probs, shift), uv + shift
            if cm is not None:
                cm = cmap.shifted(cm, probs.numpy(), frame.model_to_image(moved) - frame.model_to_image(uv))
            uv = moved
        if cm is None:
            ere = expected_radial_error_mm(probs, uv, mm) if decoded is None or s.offsets_mm is not None else decoded[3]
            p_large = error_probability(probs, uv, mm, LARGE_ERROR_MM)
        else:
            ere, p_large = cmap.ere_and_p_large(cm, radius_mm=LARGE_ERROR_MM)
        uncertain = s.uncertain(ere, p_large, missing)
        ref, confident = reference_uv(self.info, self.mm_per_px), ~missing & ~uncertain
        implausible, expected_outside = shape_check(uv, ref, confident, frame, self.mm_per_px)
        expected = expected_places(uv, ref, confident, self.mm_per_px)
        rescued = missing & (False if expected is None else placed_inside(expected, frame, mm))
        if rescued.any():  # the map's mode fell beyond the edge; the confident landmarks place it well inside
            uv = self._best_modes_inside(probs, uv, expected, rescued, mm)
            if cm is None:
                ere, p_large = expected_radial_error_mm(probs, uv, mm), error_probability(probs, uv, mm, LARGE_ERROR_MM)
            else:  # a coarse mode far from the crop: the point is the coarse map's
                cm.points_px[rescued], cm.refined[rescued] = frame.model_to_image(uv[rescued]), False
                ere, p_large = cmap.ere_and_p_large(cm, radius_mm=LARGE_ERROR_MM)
            # `uncertain` of the others stays as judged with these points counted missing: a map whose
            # mass went beyond the edge says nothing about how hard the rest of the image is
            missing, uncertain, implausible = missing & ~rescued, uncertain | rescued, implausible | rescued
        missing = missing | (implausible & expected_outside)
        if cm is not None:
            cm.refined &= ~missing  # a point reported missing has no place, fine or coarse
        edge = ~missing & near_edge(uv, frame, mm)
        outside_crop = np.zeros(len(uv), dtype=bool) if cm is None else \
            ~missing & (cm.inside_mass < self.refiner.info.min_inside_mass)
        reasons = [[r for r, on in ((FLAG_UNCERTAIN, uncertain[i]), (FLAG_MISSING, missing[i]),
                                    (FLAG_IMPLAUSIBLE, implausible[i]), (FLAG_NEAR_EDGE, edge[i]),
                                    (FLAG_OUTSIDE_CROP, outside_crop[i])) if on]
                   for i in range(len(uv))]
        xy_px = frame.model_to_image(uv) if cm is None else cm.points_px.copy()
        xy_px[missing] = np.nan
        xy_mm = px_to_mm(xy_px, spacing)
        p = probs.numpy()
        landmarks = []
        for i, (name, abbr) in enumerate(zip(self.info.landmark_names, self.info.landmark_abbreviations, strict=True)):
            masses = {level: float(m[i]) for level, m in s.region_masses.items()}
            cont, extent = {}, (float("nan"), float("nan"))
            if extents and not missing[i]:
                extent = region_extent(p[i], masses[REACH_LEVEL], uv[i], mm) if cm is None else \
                    cmap.region_extent(cm, i, masses[REACH_LEVEL])
            if contours and not missing[i]:
                cont = LazyContours(partial(drawn_regions, p[i], masses, mm, frame.model_to_image) if cm is None
                                    else partial(cmap.drawn_contours, cm, i, masses))
            landmarks.append(LandmarkResult(
                i + 1, name, abbr, float(xy_px[i, 0]), float(xy_px[i, 1]), float(xy_mm[i, 0]), float(xy_mm[i, 1]),
                float(conf[i]), float(ere[i]), bool(reasons[i]), cont,
                bool(missing[i]), float(p_large[i]), reasons[i], *extent,
                **({} if cm is None else {"refined": bool(cm.refined[i])}),
            ))
        alignment = dict(obs.alignment)
        if implausible.any():
            alignment["implausible"] = [self.info.landmark_abbreviations[i] for i in np.nonzero(implausible)[0]]
        if edge.any():
            alignment["near_edge"] = [self.info.landmark_abbreviations[i] for i in np.nonzero(edge)[0]]
        model = {"name": self.info.name, "version": self.info.version, "sha256": self.model.sha256,
                 "settings": dict(self.model.settings)}  # the weights file's own, or a sidecar's (store/sidecar.py)
        if self.info.adaptation:
            model["adapted"] = {k: self.info.adaptation[k] for k in ("base_sha256", "method", "n_images")
                                if k in self.info.adaptation}
        im = obs.image
        return Detection(
            im["path"], tuple(im["size"]), tuple(spacing), im["spacing_source"], model,
            s.ere_threshold_mm, landmarks, p if cm is None else cm.coarse, frame, im["origin_lps"], im["direction_lps"],
            framing=obs.framing, orientation=obs.orientation, alignment=alignment,
            regions={"method": s.regions, "masses": {k: [round(float(v), 4) for v in m]
                                                       for k, m in s.region_masses.items()}},
            flag_rule=s.flag_rule(),
            **({} if cm is None else {"combined": cm, "refiner": self._refiner_record(cm, outside_crop)}),
        )

    def _combined(self, obs: Observation, probs, uv, missing, fine_scale: float = 1.0) -> "cmap.CombinedMap":
        """The combined map of the coarse maps (the settings' temperatures) and the observation's fine
        logits (the refiner's); a point reported missing keeps its coarse place (no fine point)."""
        frame = obs.frame
        coarse_px = frame.model_to_image(uv)
        cm = cmap.combine(probs.numpy(), frame.model_to_image_matrix(), obs.image["spacing_mm"],
                          fine_maps(self.refiner, obs.fine.logits, fine_scale), obs.fine.crops, coarse_px,
                          self.refiner.info.min_inside_mass)
        cm.points_px[missing], cm.refined[missing] = coarse_px[missing], False
        return cm

    def _refiner_record(self, cm, outside_crop) -> dict:
        """The JSON's "refiner": which second stage ran, and what it did on this image."""
        r, abbr = self.refiner, self.info.landmark_abbreviations
        return {"file": Path(r.path).name if r.path else "", "sha256": r.sha256,
                "base_model": dict(r.info.base_model), "crop_mm": r.info.crop_size * r.info.crop_mm_per_px,
                "crop_mm_per_px": r.info.crop_mm_per_px, "min_inside_mass": r.info.min_inside_mass,
                "refined": int(cm.refined.sum()), "outside_crop": [abbr[i] for i in np.nonzero(outside_crop)[0]]}

    def _best_modes_inside(self, probs, uv, expected_uv, which, mm):
        """uv with the points `which` decoded again from their maps within SHAPE_LIMIT_MM of their
        expected places (inside the image: the padding is masked)."""
        uv, near = uv.copy(), SHAPE_LIMIT_MM / np.asarray(mm, dtype=np.float64)
        for i in np.nonzero(which)[0]:
            local = best_mode_near(probs[i], expected_uv[i], near)
            uv[i] = decode_points(local[None, None], self.info.refine_radius)[0, 0].numpy()
        return uv

    def detect(self, radiograph: Radiograph, contours: bool = True, orientation_check=None) -> Detection:
        obs, calibrated = self._observe(radiograph, orientation_check)
        return self.decide(obs, contours=contours, calibrated=calibrated)

    def with_settings(self, **changes) -> Settings:
        """The model's settings with some fields replaced (adaptation tries alternatives)."""
        return replace(self.settings, **changes)


def mean_confidence(probs: torch.Tensor) -> float:
    """Mean over landmarks of each calibrated map's maximum: the orientation check's score."""
    return float(probs.amax(dim=(1, 2)).mean())
