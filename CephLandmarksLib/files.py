"""Files: atomic writes (never a half-written file), whole-or-nothing groups of files, finite JSON,
the rule for replacing an existing file, SHA-256 digests, and whether a folder can take new files;
no torch."""

import hashlib
import json
import math
import os
import tempfile
from pathlib import Path

from .errors import CephError

TEMP_SUFFIX = ".part"
# Characters of the target's name kept in its temporary name: enough to recognise it, short enough that a
# 250-character target name still gives a temporary name under the file systems' 255-byte limit.
TEMP_NAME_CHARS = 32
# Written into the metadata of the PNG and PDF files this package renders, so that a later run recognises
# them as its own (files.is_tagged) and may replace them; any other existing file is never replaced.
OUTPUT_TAG = "CephLandmarks"
_TAG_SCAN_BYTES = 1 << 16  # a PNG's text chunks precede its pixels; a PDF's Info dictionary is near its end


def file_sha256(path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


class WriteError(CephError, OSError):
    """A file could not be written (disk full, permission, name too long): a user error naming the file,
    and still an OSError for callers that catch those."""


def write_error(path, error: OSError) -> WriteError:
    """The one line for a file that could not be written, naming the file (never its temporary name)."""
    return WriteError(f"cannot write {path}: {error.strerror or error}")


def temp_path(path) -> Path:
    """A new empty temporary file beside `path` (same folder, so that the rename is atomic)."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name[:TEMP_NAME_CHARS]}.", suffix=TEMP_SUFFIX)
    except OSError as e:
        raise write_error(path, e) from None
    os.close(fd)
    return Path(tmp)


def _publish(tmp: Path, path: Path) -> None:
    """Give the temporary file the usual permissions (mkstemp makes 0600) and rename it to `path`."""
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)
    os.replace(tmp, path)


def atomic_write(path, write_fn):
    """Write via a temporary file in the same folder and rename: never a half-written file.

    write_fn(temporary path) writes the content.  The temporary file is removed on any failure,
    Ctrl-C and (through the CLI's handler) SIGTERM included; an OSError becomes a CephError naming `path`.
    """
    write_group([(path, write_fn)])


def write_group(jobs) -> list:
    """Write several files whole-or-nothing: [(path, write_fn(tmp))] -> their paths.

    Every file is written to a temporary name first; only when all are written are they renamed
    into place.  On any failure (or interruption) no temporary file is left, and the files of
    this group already renamed are removed again, so the group is never left half-written.
    """
    temps, done = [], []
    try:
        for path, write_fn in jobs:
            temps.append(temp_path(path))
            try:
                write_fn(str(temps[-1]))
            except WriteError:
                raise
            except OSError as e:
                raise write_error(path, e) from None
        for tmp, (path, _) in zip(temps, jobs, strict=True):
            try:
                _publish(tmp, Path(path))
            except OSError as e:
                raise write_error(path, e) from None
            done.append(Path(path))
    except BaseException:
        for p in temps + done:  # done is not empty only when a rename failed
            try:
                p.unlink(missing_ok=True)
            except OSError:
                pass
        raise
    return done


def finite(value):
    """`value` with every NaN or infinity replaced by None (and NumPy scalars and arrays by Python
    ones), so that json.dumps(..., allow_nan=False) always succeeds and writes valid JSON."""
    if isinstance(value, dict):
        return {k: finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [finite(v) for v in value]
    if hasattr(value, "tolist"):  # NumPy scalar or array
        return finite(value.tolist())
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def json_text(value, indent=2) -> str:
    """Valid JSON (no bare NaN): non-finite numbers become null."""
    return json.dumps(finite(value), indent=indent, allow_nan=False)


def same_file(a, b) -> bool:
    """Whether two paths name the same file: resolved paths, or (both existing) the same inode (hard links)."""
    a, b = Path(a), Path(b)
    try:
        if os.path.samefile(a, b):
            return True
    except OSError:
        pass
    return os.path.realpath(a) == os.path.realpath(b)  # not Path.resolve: a symbolic-link loop raises there


def is_tagged(path) -> bool:
    """Whether a PNG or PDF file carries OUTPUT_TAG in its metadata (rendered by this package)."""
    tag = OUTPUT_TAG.encode()
    try:
        with open(path, "rb") as f:
            head = f.read(_TAG_SCAN_BYTES)
            f.seek(max(0, os.fstat(f.fileno()).st_size - _TAG_SCAN_BYTES))
            tail = f.read(_TAG_SCAN_BYTES)
    except OSError:
        return False
    return tag in head or tag in tail


def check_replaceable(path, is_ours) -> None:
    """The overwrite rule: an existing file at an output's name is replaced only when `is_ours(path)`
    recognises it as an earlier output of this package; anything else (a folder, a user's file, an
    input image) raises CephError naming it, and nothing is written."""
    path = Path(path)
    if not os.path.lexists(path):
        return
    if path.is_dir():
        raise CephError(f"{path} is a folder where an output file would go; nothing was written")
    if not is_ours(path):
        raise CephError(f"{path} exists and is not an earlier ceph-landmarks output; it is not replaced "
                        "(move it, or choose another output folder)")


def writable_folder(folder, what: str) -> Path:
    """`folder` (created later if missing) can take new files: its nearest existing ancestor is a
    folder where a probe file can be made (os.access says yes to root even on read-only mounts).
    Nothing is created here.  CephError naming `what` otherwise."""
    folder = Path(folder).absolute()
    existing = next(p for p in (folder, *folder.parents) if p.exists() or p == Path(p.anchor))
    if not existing.is_dir():
        raise CephError(f"{what} {folder}: {existing} is not a folder")
    try:
        with tempfile.TemporaryFile(dir=existing):
            pass
    except OSError as e:
        raise CephError(f"{what} {folder}: cannot write in {existing} ({e.strerror or e})") from None
    return folder
