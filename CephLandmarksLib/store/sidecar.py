"""Calibration sidecars: a model's settings in a small JSON file beside its weights; no torch.

A recalibration or an adaptation by offsets changes only the settings a model file's header
carries (temperatures, ERE threshold, flag rule, region masses, convention offsets, the records
of how they were fitted), not its 47 MB of weights.  A sidecar holds those settings and the
SHA-256 of the weights they belong to, so such a change writes kilobytes and the weights file
stays byte-identical (git gains no new blob)::

    {"format": "ceph-landmarks-sidecar/1",
     "weights_file": "isbi2015-384x480.safetensors",      # beside the sidecar, or shipped
     "weights_sha256": "<the weights' tensor digest>",    # the header's weights_sha256
     "settings": {"temperatures": [...], "ere_threshold_mm": 1.2, ...},
     "sidecar_sha256": "<SHA-256 of the rest, canonical JSON>"}

Precedence: every setting the sidecar holds replaces the one embedded in the weights file; the
others stay the weights file's.  The merged metadata pass the same checks as a model file's
(modelmeta.FIELDS).  A sidecar whose weights_sha256 is not the weights file's is refused with
one line: its settings were fitted to other weights.  A path ending in ``.json`` names a sidecar
wherever a model file is taken (``--model``, the registry, the Slicer model list).
"""

import json
from pathlib import Path

from ..errors import CephError
from ..files import atomic_write
from .modelmeta import FIELDS, MetadataError, canonical_json, metadata_digest, sha256_hex, validate

FORMAT = "ceph-landmarks-sidecar/1"
CHECKSUM_KEY = "sidecar_sha256"
SUFFIX = ".json"
MAX_BYTES = 4_000_000  # settings of 19 landmarks and their fitting records are tens of kilobytes
# The settings a sidecar may carry: what calibration and clinic adaptation fit, and the model's name and version
# (an adapted sidecar names itself).  The network's shape, landmarks and training record stay the weights'.
# The shipped models' folder (registry.SHIPPED_MODELS_DIR): CephLandmarksLib/../Resources/Models.
SHIPPED_MODELS_DIR = Path(__file__).resolve().parents[2] / "Resources" / "Models"
SETTINGS = ("name", "version", "temperatures", "ere_threshold_mm", "flag_p_large_min", "flag_image_weight",
            "region_masses", "convention_offsets_mm", "calibration", "adaptation", "refiner_temperature_scale")


def is_sidecar_path(path) -> bool:
    """Whether a model path names a sidecar (``*.json``) rather than a weights file."""
    return Path(path).suffix.lower() == SUFFIX


def read_sidecar(path) -> dict:
    """The checked sidecar document at `path`; CephError, one line naming the file, otherwise."""
    path = Path(path)
    if not path.is_file():
        raise CephError(f"model sidecar not found: {path}" if not path.exists() else f"{path} is not a file")
    try:
        with open(path, "rb") as f:
            raw = f.read(MAX_BYTES + 1)
    except OSError as e:
        raise CephError(f"{path}: cannot be read ({e.strerror or e})") from None
    if len(raw) > MAX_BYTES:
        raise CephError(f"{path} is not a model sidecar (over {MAX_BYTES // 1_000_000} MB)")
    try:
        doc = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError):
        raise CephError(f"{path} is not a model sidecar (not JSON)") from None
    try:
        return check_document(doc)
    except CephError as e:
        raise CephError(f"{path}: {e}") from None


def check_document(doc) -> dict:
    """The sidecar's own fields (format, weights file, digest, known settings, checksum); returns it."""
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        found = doc.get("format") if isinstance(doc, dict) else None
        raise CephError(f"not a model sidecar (format {found!r}; this version reads {FORMAT})")
    name = doc.get("weights_file")
    if not isinstance(name, str) or Path(name).name != name or not name.endswith(".safetensors"):
        raise CephError(f"the sidecar's weights_file must be a .safetensors file name beside it, got {name!r}")
    problem = sha256_hex(doc.get("weights_sha256"), {})
    if problem:
        raise CephError(f"the sidecar's weights_sha256 {problem}")
    settings = doc.get("settings")
    if not isinstance(settings, dict):
        raise CephError("the sidecar's settings must be a JSON object")
    unknown = sorted(set(settings) - set(SETTINGS))
    if unknown:
        raise CephError(f"the sidecar sets {unknown[0]!r}, which a sidecar cannot change (it may set "
                        f"{', '.join(SETTINGS)})")
    try:
        ok = doc.get(CHECKSUM_KEY) == _digest(doc)
    except ValueError:  # NaN somewhere: the merged check names the field
        ok = True
    if not ok:
        raise CephError("the sidecar does not match its checksum; it is damaged or was edited by hand")
    return doc


def _digest(doc: dict) -> str:
    return metadata_digest({k: v for k, v in doc.items() if k != CHECKSUM_KEY})


def weights_path(path, doc: dict) -> Path:
    """The weights file a sidecar names: beside the sidecar, else a shipped model of that name (a
    clinic's sidecar in the user's folder adapts the shipped weights without copying them)."""
    beside = Path(path).parent / doc["weights_file"]
    shipped = SHIPPED_MODELS_DIR / doc["weights_file"]
    return shipped if not beside.exists() and shipped.is_file() else beside


def apply(meta: dict, doc: dict, path) -> dict:
    """The weights' metadata with the sidecar's settings in their place, checked as a model file's are.

    CephError when the sidecar belongs to other weights, or a setting fails its check."""
    if doc["weights_sha256"] != meta.get("weights_sha256"):
        raise CephError(f"{path} does not belong to {doc['weights_file']}: it was fitted to weights "
                        f"{doc['weights_sha256'][:12]}, the file holds weights {str(meta.get('weights_sha256'))[:12]}")
    merged = dict(meta, **doc["settings"])
    try:
        return validate(merged)
    except MetadataError as e:
        raise CephError(f"{path}: sidecar setting {e.field!r} is invalid ({e})") from None


def settings_of(meta: dict) -> dict:
    """The settings a sidecar records of (validated) metadata: those of SETTINGS it holds."""
    return {k: meta[k] for k in SETTINGS if k in meta and k in FIELDS}


def document(weights_file: str, weights_sha256: str, settings: dict) -> dict:
    """A sealed sidecar document (checksum included); CephError if it is not a valid one."""
    try:
        plain = json.loads(json.dumps(settings, allow_nan=False))
    except (TypeError, ValueError) as e:
        raise CephError(f"the sidecar settings cannot be written as JSON ({e})") from None
    doc = {"format": FORMAT, "weights_file": weights_file, "weights_sha256": weights_sha256, "settings": plain}
    canonical_json(doc)  # refuses NaN before anything is written
    doc[CHECKSUM_KEY] = _digest(doc)
    return check_document(doc)


def write_sidecar(path, weights_file, meta: dict) -> Path:
    """Write the sidecar of `meta` (the weights' metadata with the new settings) for the weights file
    `weights_file` (which must lie in the same folder), atomically.  The merged settings are checked
    first: an invalid sidecar is never written."""
    path, weights_file = Path(path), Path(weights_file)
    doc = document(weights_file.name, meta["weights_sha256"], settings_of(meta))
    if weights_path(path, doc).resolve() != weights_file.resolve():
        raise CephError(f"a sidecar lies beside its weights (or names a shipped model): {path} is not in the "
                        f"folder of {weights_file}")
    apply(meta, doc, path)
    text = json.dumps(doc, indent=1, allow_nan=False) + "\n"
    atomic_write(path, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))
    return path


def default_path(weights_file, tag: str = "calibration") -> Path:
    """Where a command writes a weights file's sidecar by default: ``<stem>.<tag>.json`` beside it."""
    weights_file = Path(weights_file)
    return weights_file.with_name(f"{weights_file.stem}.{tag}{SUFFIX}")
