"""Model files: one safetensors file holding the weights, the temperatures and the metadata;
optionally a sidecar (sidecar.py) whose settings override the embedded ones.

safetensors never executes code on loading.  The metadata (JSON under the key
"ceph_landmarks") carries the landmark names, input size, temperatures, ERE threshold,
training settings, metrics, a SHA-256 of the tensors and one of the metadata, all checked on
every load.  Every field is validated by the one table in modelmeta.py (torch-free, shared with
the registry); see there for the checksum scheme and how older files load.
"""

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

import torch

from ..errors import CephError
from ..files import atomic_write, file_sha256  # noqa: F401 - re-exported: callers import them from here
from ..landmarks import ISBI_LANDMARKS
from ..network.model import LandmarkUNet
from .modelmeta import (
    FORMAT,  # noqa: F401 - one definition, shared with the torch-free registry
    check_model_path,
    dumps,
    parse_and_check,
    seal,
)
from .modelmeta import META_KEY as _META_KEY
from .sidecar import apply, is_sidecar_path, read_sidecar, weights_path, write_sidecar


@dataclass
class ModelInfo:
    """The metadata of a model file.  Each field has one row in modelmeta.FIELDS, its check."""

    name: str = "ceph-landmarks"
    version: str = "0"
    input_size: tuple[int, int] = (320, 416)  # (width, height)
    landmark_names: list = field(default_factory=lambda: [lm.name for lm in ISBI_LANDMARKS])
    landmark_abbreviations: list = field(default_factory=lambda: [lm.abbreviation for lm in ISBI_LANDMARKS])
    temperatures: list = field(default_factory=lambda: [1.0] * len(ISBI_LANDMARKS))
    ere_threshold_mm: float = 1.5
    # Flag rule: None flags ERE > ere_threshold_mm; a probability p flags P(error > 4 mm) >= p instead (adapted
    # models, whose maps are calibrated on the clinic's own images).
    flag_p_large_min: float | None = None
    # ... and with a weight w, that P adjusted for the image's other landmarks (flag_score.image_adjusted_p_large);
    # 0 or absent: the map's own P (adapted models written before it existed).
    flag_image_weight: float = 0.0
    refine_radius: int = 1
    model_mm_per_px: float | None = None  # mm per model pixel the model was trained at (None: older files)
    reference_uv: list | None = None  # (L, 2) mean training landmark positions, model pixels (alignment.py)
    training: dict = field(default_factory=dict)
    calibration: dict = field(default_factory=dict)
    metrics: dict = field(default_factory=dict)
    # Conformal regions (conformal.py): {"50": [L masses], "90": [L masses]}, each mass in (0, 1]; empty: the
    # nominal 0.5 / 0.9.  The region drawn for level "90" is the smallest holding that landmark's mass.
    region_masses: dict = field(default_factory=dict)
    # Clinic conventions (adaptation.py): (L, 2) offsets in mm in the head frame (along S->N, then its normal);
    # None: no correction.  Applied to the point and its heatmap.
    convention_offsets_mm: list | None = None
    # A clinic adaptation run with the second stage: its factor on the refiner's fine-map temperatures
    # (adaptation._fine_temperature_scale); None: 1.
    refiner_temperature_scale: float | None = None
    # Adaptation record: base model SHA-256, clinic image ids and count, method, cross-validated figures.
    adaptation: dict = field(default_factory=dict)


ISBI_IMAGE_WIDTH_MM = 1935 * 0.1  # ISBI 2015 images: 1935 px at 0.1 mm, fitted to the model's width


def model_mm_per_px(info: ModelInfo) -> float:
    """The model's own millimetres per model pixel: stored by training, or, for model files
    written before it was stored (all trained on ISBI 2015 with fit framing), derived from
    the ISBI image width fitted to the model's input width."""
    if info.model_mm_per_px:
        return float(info.model_mm_per_px)
    return ISBI_IMAGE_WIDTH_MM / float(info.input_size[0])


@dataclass
class LoadedModel:
    net: LandmarkUNet
    info: ModelInfo
    path: str
    sha256: str  # of the whole file
    half: bool = False  # weights stored as float16
    # Where the settings came from: {"source": "weights file"}, or {"source": "sidecar", "file", "sha256"}
    # (sidecar.py: a sidecar's settings override the weights file's).
    settings: dict = field(default_factory=lambda: {"source": "weights file"})
    weights_sha256: str = ""  # the tensors' digest (the header's weights_sha256), which a sidecar records


def _tensor_digest(tensors: dict) -> str:
    h = hashlib.sha256()
    for key in sorted(tensors):
        t = tensors[key].detach().contiguous().cpu()
        h.update(key.encode())
        h.update(str(t.dtype).encode())
        h.update(str(tuple(t.shape)).encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


def save_model(path, net: torch.nn.Module, info: ModelInfo, half: bool = False):
    from safetensors.torch import save_file

    tensors = {k: v.detach().cpu().contiguous() for k, v in net.state_dict().items()}
    if half:
        tensors = {k: v.half() if v.is_floating_point() else v for k, v in tensors.items()}
    meta = _sealed_meta(dict(info.__dict__, input_size=list(info.input_size), weights_sha256=_tensor_digest(tensors)))
    atomic_write(path, lambda tmp: save_file(tensors, tmp, metadata={_META_KEY: dumps(meta)}))


def _meta_of(info: ModelInfo, weights_sha256: str) -> dict:
    return dict(info.__dict__, format=FORMAT, input_size=list(info.input_size), weights_sha256=weights_sha256)


def save_settings(path, loaded: LoadedModel, info: ModelInfo, half=None):
    """Write a model's (changed) settings: a sidecar for the weights file `loaded.path` when `path`
    ends in .json (kilobytes; the weights file is not touched), else the whole model file."""
    if is_sidecar_path(path):
        write_sidecar(path, loaded.path, json.loads(json.dumps(_meta_of(info, loaded.weights_sha256))))
    else:
        save_model(path, loaded.net, info, half=loaded.half if half is None else half)


def _sealed_meta(meta: dict) -> dict:
    """Metadata as plain JSON values (tuples -> lists), validated and checksummed: an invalid
    model file is never written (CephError naming the field)."""
    try:
        plain = json.loads(json.dumps(meta))
    except (TypeError, ValueError) as e:
        raise CephError(f"the model metadata cannot be written as JSON ({e})") from None
    return seal(plain)


def reseal(path):
    """Rewrite a valid model file (e.g. of the older format) in the current format, with the
    metadata checksum; the tensors are copied byte for byte (no dtype conversion)."""
    from safetensors.torch import load_file, save_file

    loaded = load_model(path)  # verifies the weights' checksum and validates every field
    tensors = load_file(str(path))
    with _open(path) as f:
        meta = json.loads(f.metadata()[_META_KEY])
    meta = _sealed_meta(meta)
    assert meta["weights_sha256"] == _tensor_digest(tensors)
    atomic_write(path, lambda tmp: save_file(tensors, tmp, metadata={_META_KEY: dumps(meta)}))
    return loaded.info


def _open(path):
    from safetensors import safe_open

    return safe_open(str(path), framework="pt")


def load_model(path, device="cpu") -> LoadedModel:
    """Load and verify a model file, or a sidecar (``*.json``) and the weights file it names, its
    settings overriding the weights file's; any problem raises CephError naming it."""
    if is_sidecar_path(path):
        doc = read_sidecar(path)
        loaded = load_model(weights_path(path, doc), device)
        meta = apply(_meta_of(loaded.info, loaded.weights_sha256), doc, path)
        loaded.info = _info(meta)
        loaded.settings = {"source": "sidecar", "file": Path(path).name, "sha256": file_sha256(path)}
        return loaded
    from safetensors import safe_open
    from safetensors.torch import load_file

    path = Path(path)
    check_model_path(path)
    try:
        with safe_open(str(path), framework="pt") as f:
            raw = (f.metadata() or {}).get(_META_KEY)
        tensors = load_file(str(path))
    except Exception as e:  # safetensors raises several types for corrupt headers
        first = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise CephError(f"{path} is not a readable model file (corrupt, truncated or not safetensors: {first})") \
            from None
    try:
        meta = parse_and_check(raw)
    except CephError as e:
        raise CephError(f"{path}: {e}") from None
    if _tensor_digest(tensors) != meta["weights_sha256"]:
        raise CephError(f"{path}: the weights do not match their checksum; the file is damaged")
    info = _info(meta)
    net = LandmarkUNet(len(info.landmark_names))
    try:
        net.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in tensors.items()})
    except RuntimeError as e:
        raise CephError(f"{path}: the weights do not fit the network ({str(e).splitlines()[0]})") from None
    net.eval().to(device)
    half = any(v.dtype == torch.float16 for v in tensors.values())
    return LoadedModel(net, info, str(path), file_sha256(path), half, weights_sha256=meta["weights_sha256"])


def _info(meta: dict) -> ModelInfo:
    known = set(ModelInfo.__dataclass_fields__)
    info = ModelInfo(**{k: v for k, v in meta.items() if k in known})
    info.input_size = tuple(info.input_size)
    return info
