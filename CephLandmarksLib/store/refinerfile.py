"""Refiner files: the second stage's weights (float16) and metadata in one safetensors file.

The metadata (JSON under "ceph_landmarks_refiner") says the format, the landmarks, the crop
(size in pixels, millimetres a pixel), the network's channels, the fine maps' temperatures,
the coarse mass a crop must hold for its point to be used, the base model it was trained
behind (name and file SHA-256), the two-stage settings fitted on held-out images (the flag
threshold on the combined map's ERE and its conformal region masses: training/refiner_calibration.py),
the training record and a SHA-256 of the tensors, checked on every load.  safetensors runs no
code on loading.
"""

import json
from dataclasses import asdict, dataclass, field

import torch

from ..errors import CephError
from ..files import atomic_write, file_sha256
from ..network.refiner import CHANNELS, RefinerNet
from .header import REFINER_FORMAT, REFINER_META_KEY
from .modelfile import _tensor_digest
from .modelmeta import ERE_THRESHOLD_RANGE_MM, region_masses

META_KEY, FORMAT = REFINER_META_KEY, REFINER_FORMAT  # defined with the torch-free header reader


@dataclass
class RefinerInfo:
    landmark_abbreviations: list
    crop_size: int = 128  # crop pixels a side
    crop_mm_per_px: float = 0.125
    channels: list = field(default_factory=lambda: list(CHANNELS))
    temperatures: list = field(default_factory=list)  # per landmark; empty: 1
    min_inside_mass: float = 0.5
    base_model: dict = field(default_factory=dict)  # {"name", "file_sha256"}
    training: dict = field(default_factory=dict)
    # The two-stage detector's own settings (None / empty: not yet fitted; the base model's are used):
    ere_threshold_mm: float | None = None  # flag a point whose combined-map ERE exceeds this
    region_masses: dict = field(default_factory=dict)  # {"50": (L,), "90": (L,)} combined-map conformal masses
    calibration: dict = field(default_factory=dict)  # how they were fitted (images, rule, held-out figures)


@dataclass
class LoadedRefiner:
    net: RefinerNet
    info: RefinerInfo
    path: str
    sha256: str


def save_refiner(path, net: RefinerNet, info: RefinerInfo) -> None:
    from safetensors.torch import save_file

    tensors = {k: (v.half() if v.is_floating_point() else v).detach().cpu().contiguous()
               for k, v in net.state_dict().items()}
    meta = dict(asdict(info), format=FORMAT, weights_sha256=_tensor_digest(tensors))
    text = json.dumps(meta, allow_nan=False)
    atomic_write(path, lambda tmp: save_file(tensors, tmp, metadata={META_KEY: text}))


def _check(meta, path) -> RefinerInfo:
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise CephError(f"{path} is not a refiner file ({FORMAT})")
    known = set(RefinerInfo.__dataclass_fields__)
    try:
        info = RefinerInfo(**{k: v for k, v in meta.items() if k in known})
    except TypeError as e:
        raise CephError(f"{path}: the refiner metadata is incomplete ({e})") from None
    n = len(info.landmark_abbreviations)
    if not (isinstance(info.crop_size, int) and 16 <= info.crop_size <= 512 and info.crop_size % 16 == 0):
        raise CephError(f"{path}: crop_size must be a multiple of 16 from 16 to 512")
    if not (isinstance(info.crop_mm_per_px, int | float) and 0.01 <= info.crop_mm_per_px <= 2):
        raise CephError(f"{path}: crop_mm_per_px must be from 0.01 to 2 mm")
    if info.temperatures and (len(info.temperatures) != n or not all(0 < t < 100 for t in info.temperatures)):
        raise CephError(f"{path}: temperatures must be {n} positive numbers")
    if not 0 <= info.min_inside_mass <= 1:
        raise CephError(f"{path}: min_inside_mass must be from 0 to 1")
    lo, hi = ERE_THRESHOLD_RANGE_MM
    if info.ere_threshold_mm is not None and not (isinstance(info.ere_threshold_mm, int | float)
                                                  and lo <= info.ere_threshold_mm <= hi):
        raise CephError(f"{path}: ere_threshold_mm must be from {lo} to {hi} mm")
    problem = region_masses(info.region_masses, meta) or next(
        (f"level {k!r} has {len(m)} masses for {n} landmarks" for k, m in info.region_masses.items() if len(m) != n),
        None)
    if problem:
        raise CephError(f"{path}: region_masses {problem}")
    return info


def load_refiner(path, device="cpu") -> LoadedRefiner:
    """Load and verify a refiner file; CephError, one line, for anything else."""
    from safetensors import safe_open
    from safetensors.torch import load_file

    try:
        with safe_open(str(path), framework="pt") as f:
            raw = (f.metadata() or {}).get(META_KEY)
        tensors = load_file(str(path))
    except FileNotFoundError:
        raise CephError(f"refiner file not found: {path}") from None
    except Exception as e:  # safetensors raises several types for corrupt headers
        raise CephError(f"{path} is not a readable refiner file ({str(e).splitlines()[0][:120] if str(e) else e})") \
            from None
    try:
        meta = json.loads(raw) if raw else None
    except ValueError:
        meta = None
    info = _check(meta, path)
    if _tensor_digest(tensors) != meta.get("weights_sha256"):
        raise CephError(f"{path}: the weights do not match their checksum; the file is damaged")
    net = RefinerNet(len(info.landmark_abbreviations), tuple(info.channels))
    try:
        net.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in tensors.items()})
    except RuntimeError as e:
        raise CephError(f"{path}: the weights do not fit the refiner ({str(e).splitlines()[0][:120]})") from None
    return LoadedRefiner(net.eval().to(device), info, str(path), file_sha256(path))


def save_refiner_settings(path, loaded: LoadedRefiner, info: RefinerInfo) -> None:
    """Write `loaded`'s weights with `info` (new settings) to `path`, atomically: the tensors are those
    read (float16 both ways), so the weights' checksum is unchanged."""
    save_refiner(path, loaded.net, info)


def temperatures_tensor(info: RefinerInfo) -> torch.Tensor:
    n = len(info.landmark_abbreviations)
    return torch.tensor(info.temperatures if info.temperatures else [1.0] * n, dtype=torch.float32)
