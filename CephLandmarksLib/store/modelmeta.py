"""Model metadata: the one table of fields with their checks, and the metadata checksum; no torch.

Both readers use it: ``registry.read_model_info`` (torch-free, header only) and
``modelfile.load_model`` (which also checks the weights against ``weights_sha256``), and
``modelfile.save_model`` checks before writing, so an invalid model file is never written.

Checksum scheme (format ``ceph-landmarks-model/2``): ``weights_sha256`` covers the tensors
(names, dtypes, shapes, bytes) and ``metadata_sha256`` the SHA-256 of the canonical JSON of every
other metadata entry, ``weights_sha256`` included, so together they cover metadata and tensors;
a changed temperature or threshold reads as a damaged file.  Files of format
``ceph-landmarks-model/1`` (written before the metadata checksum) still load: their tensors are
checksummed and every field is validated, but their metadata is not covered.

To add a field: add it to ``modelfile.ModelInfo`` and one row to ``FIELDS`` (a test checks both agree).
"""

import hashlib
import json
import math
import re

from ..errors import CephError
from ..landmarks import N_LANDMARKS

FORMAT = "ceph-landmarks-model/2"  # written by this version: metadata checksummed
LEGACY_FORMATS = ("ceph-landmarks-model/1",)  # still read: tensors checksummed, metadata validated only
META_KEY = "ceph_landmarks"  # the safetensors __metadata__ entry holding our metadata (JSON)
CHECKSUM_KEY = "metadata_sha256"

TEMPERATURE_RANGE = (0.05, 20.0)  # calibration clamps its fit to this range; the loader refuses outside it
ERE_THRESHOLD_RANGE_MM = (0.05, 30.0)  # above ~30 mm (a sixth of a skull) a threshold flags nothing
INPUT_SIZE_RANGE = (64, 2048)  # model input width and height, pixels
INPUT_SIZE_MULTIPLE = 32  # the U-Net halves the input five times
REFINE_RADIUS_RANGE = (0, 5)  # model pixels around the argmax used for sub-pixel refinement
MODEL_MM_PER_PX_RANGE = (0.01, 10.0)
FLAG_P_LARGE_RANGE = (0.001, 0.5)  # a flag probability outside this flags (nearly) everything or nothing
REFINER_TEMPERATURE_SCALE_RANGE = (0.25, 8.0)  # a clinic's factor on the second stage's temperatures
FLAG_IMAGE_WEIGHT_RANGE = (0.0, 2.0)  # above 2 the image's other landmarks would outweigh the point's own map
CONVENTION_OFFSET_LIMIT_MM = 20.0  # a clinic's convention moves a point by less than this
REGION_LEVELS = ("50", "90")  # conformal region levels (percent) a model may carry masses for


class MetadataError(CephError):
    """A metadata field is missing or invalid: `field` names it (None: the metadata as a whole)."""

    def __init__(self, field, problem):
        super().__init__(f"model metadata field {field!r} {problem}" if field else f"the model metadata {problem}")
        self.field = field


# Checks: each takes (value, meta) and returns None when the value is fine, else the problem in words.


def _is_number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _short(v) -> str:
    text = json.dumps(v, allow_nan=True, default=str) if not isinstance(v, str) else repr(v)
    return text if len(text) <= 40 else text[:37] + "..."


def n_landmarks(meta) -> int:
    names = meta.get("landmark_names")
    return len(names) if isinstance(names, list) else N_LANDMARKS


def text(v, meta):
    return None if isinstance(v, str) else f"must be a string, got {_short(v)}"


def landmark_names(v, meta):
    if not isinstance(v, list) or len(v) != N_LANDMARKS:
        return f"must be a list of {N_LANDMARKS} names, got {_short(v) if not isinstance(v, list) else len(v)}"
    if not all(isinstance(s, str) and s.strip() for s in v) or len(set(v)) != len(v):
        return "must hold distinct non-empty strings"
    return None


def landmark_abbreviations(v, meta):
    n = n_landmarks(meta)
    if not isinstance(v, list) or len(v) != n:
        return f"must be a list of {n} abbreviations (one per landmark name), got " \
               f"{_short(v) if not isinstance(v, list) else len(v)}"
    if not all(isinstance(s, str) and s.strip() for s in v) or len(set(v)) != len(v):
        return "must hold distinct non-empty strings"
    return None


def number_list(lo, hi, lo_open=False):
    """A check: one number per landmark, each finite within [lo, hi] ((lo, hi] with lo_open)."""
    def check(v, meta):
        n = n_landmarks(meta)
        interval = f"{'(' if lo_open else '['}{lo:g}, {hi:g}]"
        if not isinstance(v, list) or len(v) != n or not all(_is_number(t) for t in v):
            return f"must be a list of {n} numbers in {interval}, got " \
                   f"{_short(v) if not isinstance(v, list) or len(v) == n else f'{len(v)} values'}"
        bad = [t for t in v if not (math.isfinite(t) and (lo < t if lo_open else lo <= t) and t <= hi)]
        return f"must hold numbers in {interval}, got {_short(bad[0])}" if bad else None
    return check


def number(lo, hi, optional=False):
    """A check: a finite number in [lo, hi] (or null with `optional`)."""
    def check(v, meta):
        if v is None and optional:
            return None
        if not _is_number(v) or not math.isfinite(v) or not lo <= v <= hi:
            return f"must be a number in [{lo:g}, {hi:g}]{' or null' if optional else ''}, got {_short(v)}"
        return None
    return check


def integer(lo, hi):
    def check(v, meta):
        return None if _is_int(v) and lo <= v <= hi else f"must be an integer in [{lo}, {hi}], got {_short(v)}"
    return check


def input_size(v, meta):
    lo, hi = INPUT_SIZE_RANGE
    if (not isinstance(v, (list, tuple)) or len(v) != 2 or not all(_is_int(s) for s in v)
            or not all(lo <= s <= hi and s % INPUT_SIZE_MULTIPLE == 0 for s in v)):
        return f"must be [width, height], multiples of {INPUT_SIZE_MULTIPLE} in [{lo}, {hi}], got {_short(v)}"
    return None


def point_table(bound, optional=True):
    """A check: null, or one finite (x, y) pair per landmark; bound(meta) gives ((x_lo, x_hi), (y_lo, y_hi))."""
    def check(v, meta):
        if v is None and optional:
            return None
        n = n_landmarks(meta)
        (xl, xh), (yl, yh) = bound(meta)
        shape_ok = isinstance(v, list) and len(v) == n and all(
            isinstance(p, list) and len(p) == 2 and all(_is_number(c) for c in p) for p in v)
        if not shape_ok:
            return f"must be null or {n} [x, y] pairs of numbers, got {_short(v)}"
        bad = [p for p in v if not (math.isfinite(p[0]) and math.isfinite(p[1]) and xl <= p[0] <= xh
                                    and yl <= p[1] <= yh)]
        return f"must hold finite values with x in [{xl:g}, {xh:g}], y in [{yl:g}, {yh:g}], got {_short(bad[0])}" \
            if bad else None
    return check


def _model_extent(meta):
    w, h = meta.get("input_size") or (0, 0)
    return (0, w), (0, h)


def _offset_extent(meta):
    lim = CONVENTION_OFFSET_LIMIT_MM
    return (-lim, lim), (-lim, lim)


def json_object(v, meta):
    return None if isinstance(v, dict) else f"must be a JSON object, got {_short(v)}"


def training_record(v, meta):
    if not isinstance(v, dict):
        return json_object(v, meta)
    ids = v.get("holdout_ids")
    if ids is not None and not (isinstance(ids, list) and all(isinstance(i, str) for i in ids)):
        return "has holdout_ids that are not a list of image ids (strings)"
    return None


def region_masses(v, meta):
    if not isinstance(v, dict):
        return json_object(v, meta)
    unknown = [k for k in v if k not in REGION_LEVELS]
    if unknown:
        return f"has level {unknown[0]!r}; the levels are {', '.join(REGION_LEVELS)}"
    for level, masses in v.items():
        problem = number_list(0.0, 1.0, lo_open=True)(masses, meta)
        if problem:
            return f"level {level!r} {problem}"
    return None


def sha256_hex(v, meta):
    return None if isinstance(v, str) and re.fullmatch(r"[0-9a-f]{64}", v) else \
        f"must be a SHA-256 (64 hex digits), got {_short(v)}"


def model_format(v, meta):
    if v == FORMAT or v in LEGACY_FORMATS:
        return None
    return f"is {_short(v)}: an unsupported model format (this version reads {FORMAT} and {', '.join(LEGACY_FORMATS)})"


# THE TABLE: field -> (required, check).  Optional fields that are absent take ModelInfo's default.
# landmark_names and input_size come first: later checks count landmarks and bound points by them.
FIELDS = {
    "format": (True, model_format),
    "landmark_names": (True, landmark_names),
    "input_size": (True, input_size),
    "name": (False, text),
    "version": (False, text),
    "landmark_abbreviations": (True, landmark_abbreviations),
    "temperatures": (True, number_list(*TEMPERATURE_RANGE)),
    "ere_threshold_mm": (True, number(*ERE_THRESHOLD_RANGE_MM)),
    "flag_p_large_min": (False, number(*FLAG_P_LARGE_RANGE, optional=True)),
    "flag_image_weight": (False, number(*FLAG_IMAGE_WEIGHT_RANGE)),
    "refine_radius": (True, integer(*REFINE_RADIUS_RANGE)),
    "model_mm_per_px": (False, number(*MODEL_MM_PER_PX_RANGE, optional=True)),
    "reference_uv": (False, point_table(_model_extent)),
    "training": (False, training_record),
    "calibration": (False, json_object),
    "metrics": (False, json_object),
    "region_masses": (False, region_masses),
    "convention_offsets_mm": (False, point_table(_offset_extent)),
    "adaptation": (False, json_object),
    "refiner_temperature_scale": (False, number(*REFINER_TEMPERATURE_SCALE_RANGE, optional=True)),
    "weights_sha256": (True, sha256_hex),
}


def _nonfinite_path(v, where=""):
    """The path of the first NaN or infinite number inside a JSON value, or None."""
    if isinstance(v, float) and not math.isfinite(v):
        return where or "."
    items = v.items() if isinstance(v, dict) else enumerate(v) if isinstance(v, list) else ()
    for k, item in items:
        found = _nonfinite_path(item, f"{where}.{k}" if isinstance(k, str) else f"{where}[{k}]")
        if found:
            return found
    return None


def validate(meta) -> dict:
    """Check every field of the table (and that no value anywhere is NaN or infinite); returns `meta`.

    Raises MetadataError naming the first bad field.  Checksums are checked by `verify_checksum`.
    """
    if not isinstance(meta, dict):
        raise MetadataError(None, f"must be a JSON object, got {_short(meta)}")
    for name, (required, check) in FIELDS.items():
        if name not in meta:
            if required:
                raise MetadataError(name, "is missing")
            continue
        problem = check(meta[name], meta)
        if problem:
            raise MetadataError(name, problem)
    try:
        bad = _nonfinite_path(meta)
    except RecursionError:
        raise MetadataError(None, "is nested too deeply") from None
    if bad:
        raise MetadataError(bad.lstrip(".").split(".")[0].split("[")[0],
                            f"holds NaN or infinity (at {bad.lstrip('.')})")
    return meta


def canonical_json(meta: dict) -> bytes:
    """The metadata without its checksum, as sorted compact JSON: what metadata_sha256 digests."""
    body = {k: v for k, v in meta.items() if k != CHECKSUM_KEY}
    return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False).encode()


def metadata_digest(meta: dict) -> str:
    return hashlib.sha256(canonical_json(meta)).hexdigest()


def seal(meta: dict) -> dict:
    """The metadata as this version writes it: current format, validated, with its checksum."""
    meta = dict(meta, format=FORMAT)
    meta.pop(CHECKSUM_KEY, None)
    validate(meta)
    meta[CHECKSUM_KEY] = metadata_digest(meta)
    return meta


def verify_checksum(meta: dict):
    """Files of the current format must carry the matching metadata checksum (legacy ones carry none)."""
    if meta.get("format") in LEGACY_FORMATS and CHECKSUM_KEY not in meta:
        return
    if meta.get(CHECKSUM_KEY) != metadata_digest(meta):
        raise CephError("the metadata do not match their checksum; the file is damaged")


def parse_and_check(text_or_none) -> dict:
    """The metadata JSON text of a model file -> the checked metadata dict (CephError on any problem).

    Order: JSON, then the checksum (a damaged file says so even when a value also became invalid),
    then each field.  The caller prefixes the file name.
    """
    if not isinstance(text_or_none, str):
        raise CephError(f"a safetensors file but not a CephLandmarks model (no {META_KEY} metadata)")
    try:
        meta = json.loads(text_or_none)
    except (json.JSONDecodeError, RecursionError):
        raise CephError("the model metadata is not valid JSON") from None
    if not isinstance(meta, dict):
        raise MetadataError(None, f"must be a JSON object, got {_short(meta)}")
    problem = model_format(meta.get("format"), meta)  # first: another format may have other fields
    if problem:
        raise MetadataError("format", problem)
    try:
        verify_checksum(meta)
    except ValueError:  # NaN in a field: canonical JSON refuses it; the field check names it below
        pass
    return validate(meta)


def check_model_path(path):
    """A model path must name a regular file: CephError saying what it is otherwise."""
    if path.is_file():
        return
    if not path.exists():
        raise CephError(f"model file not found: {path}")
    raise CephError(f"{path} is {'a folder' if path.is_dir() else 'not a regular file (a device, pipe or socket)'}, "
                    "not a model file")


def dumps(meta: dict) -> str:
    """JSON text for the file: never NaN or Infinity."""
    return json.dumps(meta, allow_nan=False)
