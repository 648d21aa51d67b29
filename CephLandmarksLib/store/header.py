"""A model file's header, read without torch or safetensors: the checked CephLandmarks metadata.

The registry lists models with it at Slicer's start-up, before the packages detection needs may
be installed; ``modelfile.load_model`` applies the same checks (modelmeta) and also verifies the
weights' checksum.
"""

import json
import os
import struct
from pathlib import Path

from ..errors import CephError
from .modelmeta import META_KEY, check_model_path, parse_and_check

MAX_HEADER_BYTES = 100_000_000  # safetensors' own limit; our headers are tens of kilobytes
# A refiner file's metadata key and format (store/refinerfile.py writes them; read here without torch):
REFINER_META_KEY = "ceph_landmarks_refiner"
REFINER_FORMAT = "ceph-landmarks-refiner/1"


def read_model_info(path) -> dict:
    """The CephLandmarks metadata of a model file, read from its safetensors header.

    Raises CephError, one line naming the file and the problem, for a missing or unreadable file,
    a file that is not safetensors (or whose header or weights are truncated), an absurd header
    length, a safetensors file that is not a CephLandmarks model, an unsupported format, metadata
    that do not match their checksum, or a metadata field that fails its check (modelmeta.FIELDS,
    the same validation as ``modelfile.load_model``).  Does not verify the weights' checksum:
    ``modelfile.load_model`` does, on loading.
    """
    path = Path(path)
    check_model_path(path)
    text = read_metadata(path).get(META_KEY)
    try:
        return parse_and_check(text)
    except CephError as e:
        raise CephError(f"{path}: {e}") from None


def read_refiner_base_model(path) -> dict:
    """The "base_model" record of a refiner file's header ({"name", "file_sha256"}: the model it was trained
    behind), read without torch (store/refinerfile.py, which needs torch, writes and loads the file);
    CephError, one line, for a file that is not a readable refiner."""
    path = Path(path)
    try:
        text = read_metadata(path).get(REFINER_META_KEY)
    except CephError as e:
        detail = str(e).removeprefix(str(path)).lstrip(": ")
        raise CephError(f"{path} is not a refiner file ({REFINER_FORMAT}): {detail}") from None
    try:
        meta = json.loads(text)
    except (TypeError, ValueError, RecursionError):
        meta = None
    if not isinstance(meta, dict) or meta.get("format") != REFINER_FORMAT:
        raise CephError(f"{path} is not a refiner file ({REFINER_FORMAT})")
    base = meta.get("base_model")
    return dict(base) if isinstance(base, dict) else {}


def read_metadata(path) -> dict:
    """The ``__metadata__`` of a safetensors file's header ({} when it has none), the header checked:
    its length, its JSON, the tensors' byte ranges against the file's size.  CephError, one line."""
    path = Path(path)
    try:
        with open(path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            head = f.read(8)
            if len(head) < 8:
                raise CephError(f"{path} is not a safetensors file (only {len(head)} bytes: truncated header)")
            (n,) = struct.unpack("<Q", head)
            if n > MAX_HEADER_BYTES:
                raise CephError(f"{path} is not a safetensors file (it declares an absurd header length of "
                                f"{n} bytes)")
            if 8 + n > size:
                raise CephError(f"{path} is not a safetensors file, or is truncated (the header declares {n} "
                                f"bytes, the file has {size - 8} after the length)")
            raw = f.read(n)
    except OSError as e:
        raise CephError(f"{path}: cannot be read ({e.strerror or e})") from None
    try:
        header = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise CephError(f"{path} is not a safetensors file (its header is not JSON)") from None
    if not isinstance(header, dict):
        raise CephError(f"{path} is not a safetensors file (its header is not a JSON object)")
    _check_data_length(path, header, size - 8 - n)
    metadata = header.get("__metadata__") or {}
    return metadata if isinstance(metadata, dict) else {}


def _check_data_length(path, header, available):
    """The tensors' byte ranges must end exactly where the file does (as safetensors requires)."""
    end = 0
    for key, t in header.items():
        if key == "__metadata__":
            continue
        offsets = t.get("data_offsets") if isinstance(t, dict) else None
        if (not isinstance(offsets, list) or len(offsets) != 2
                or not all(isinstance(v, int) and not isinstance(v, bool) for v in offsets)):
            raise CephError(f"{path} is not a safetensors file (tensor {key!r} has no valid data_offsets)")
        end = max(end, offsets[1])
    if end > available:
        raise CephError(f"{path} is truncated (the weights need {end} bytes, the file holds {available})")
    if end < available:
        raise CephError(f"{path} is damaged ({available - end} unexpected bytes after the weights)")
