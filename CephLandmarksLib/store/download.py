"""Models as verified downloads: the list shipped with the library, and fetching one; no torch.

``downloads.json`` beside this file lists the model files (weights and sidecars alike) published
as release assets: name, version, file name, URL, SHA-256 and size.  An entry of kind "refiner" is
a model's second stage: it names the model it runs behind (``refines``: the stem of that model's
weights file, a shipped model or a model entry of the list), and its file is
``<refines>.refiner.safetensors``, where registry.default_refiner looks for it in the per-user
folder.  A download goes into the
per-user model folder through a temporary file in that folder, which is flushed to disk and
checked (size, then SHA-256) before it is renamed into place: a truncated transfer, a wrong file,
an HTTP error or an interruption leaves nothing behind, and an existing file is never replaced.
This is what Slicer's SampleData does for its data sets.  How to publish one: docs/models.md.
"""

import hashlib
import http.client
import json
import os
import re
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from ..errors import CephError
from ..files import file_sha256, temp_path

DOWNLOADS_JSON = Path(__file__).with_name("downloads.json")
# A site may point the list elsewhere (its own mirror of the release assets; the tests' local server).
DOWNLOADS_ENV = "CEPH_LANDMARKS_DOWNLOADS"
FORMAT = "ceph-landmarks-downloads/1"
CHUNK_BYTES = 1 << 20
TIMEOUT_S = 60  # per network operation (connect, each read), not for the whole transfer
MAX_SIZE_BYTES = 2_000_000_000
USER_DIR_ENV = "CEPH_LANDMARKS_MODELS_DIR"
KINDS = ("model", "refiner")  # an entry's "kind"; absent: "model"
REFINER_SUFFIX = ".refiner.safetensors"  # a model's second stage: <weights stem>.refiner.safetensors (registry)


@dataclass(frozen=True)
class Download:
    """One downloadable file: a model (weights or sidecar), or a model's second stage (kind "refiner")."""

    name: str
    version: str
    file: str  # its file name in the per-user folder (a sidecar names its weights by this name)
    url: str
    sha256: str
    size: int  # bytes
    kind: str = "model"  # one of KINDS
    refines: str | None = None  # a refiner's model: its weights file's stem (file: <refines>.refiner.safetensors)

    @property
    def label(self) -> str:
        what = f"second stage of {self.refines}, " if self.kind == "refiner" else ""
        return f"{self.name} {self.version} ({what}download, {self.size / 1e6:.0f} MB)".replace("  ", " ")


def _entry(item, where) -> Download:
    """A checked list entry; CephError naming the entry and the field."""
    if not isinstance(item, dict):
        raise CephError(f"{where} must be a JSON object")
    fields = {"name": str, "version": str, "file": str, "url": str, "sha256": str, "size": int}
    for key, kind in fields.items():
        if not isinstance(item.get(key), kind) or isinstance(item.get(key), bool):
            raise CephError(f"{where} needs {key!r} ({kind.__name__})")
    kind = item.get("kind", "model")
    if kind not in KINDS:
        raise CephError(f"{where}: 'kind' must be one of {', '.join(KINDS)} (not {kind!r})")
    if kind == "refiner":
        refines = item.get("refines")
        if not isinstance(refines, str) or not refines or Path(refines).name != refines:
            raise CephError(f"{where} needs 'refines' (str): the stem of the weights file of the model it refines")
        if item["file"] != refines + REFINER_SUFFIX:
            raise CephError(f"{where}: a refiner's 'file' must be {refines + REFINER_SUFFIX!r} (its model's "
                            f"weights stem + {REFINER_SUFFIX}), where detection looks for it")
    elif "refines" in item:
        raise CephError(f"{where}: only a refiner entry (\"kind\": \"refiner\") has 'refines'")
    elif item["file"].endswith(REFINER_SUFFIX):
        raise CephError(f"{where}: {item['file']!r} is a refiner's name: give the entry \"kind\": \"refiner\"")
    if Path(item["file"]).name != item["file"] or not item["file"].endswith((".safetensors", ".json")):
        raise CephError(f"{where}: 'file' must be a plain .safetensors or .json file name")
    if not re.fullmatch(r"[0-9a-f]{64}", item["sha256"]):
        raise CephError(f"{where}: 'sha256' must be 64 lower-case hex digits")
    if not item["url"].startswith(("https://", "http://")):
        raise CephError(f"{where}: 'url' must be an http(s) address")
    if not 0 < item["size"] <= MAX_SIZE_BYTES:
        raise CephError(f"{where}: 'size' must be a number of bytes up to {MAX_SIZE_BYTES}")
    return Download(**{k: item[k] for k in fields}, kind=kind, refines=item.get("refines"))


def downloadable(path=None, shipped_dir=None) -> list[Download]:
    """The downloadable models and refiners the list names (an empty list until a release asset is published):
    `path`, else $CEPH_LANDMARKS_DOWNLOADS, else the shipped downloads.json.  A refiner must refine a model
    whose weights are shipped (in `shipped_dir`, default the shipped models' folder) or listed."""
    path = Path(path) if path is not None else Path(os.environ.get(DOWNLOADS_ENV) or DOWNLOADS_JSON)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as e:
        raise CephError(f"the list of downloadable models {path} cannot be read ({e})") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT or not isinstance(data.get("models"), list):
        raise CephError(f"{path} is not a list of downloadable models (format {FORMAT})")
    items = [_entry(item, f"{path.name}: entry {i + 1}") for i, item in enumerate(data["models"])]
    names = [m.name for m in items]
    if len(set(names)) != len(names):
        raise CephError(f"{path.name} names an entry twice")
    files = [m.file for m in items]
    if len(set(files)) != len(files):
        raise CephError(f"{path.name} lists a file twice")
    _check_refined(items, path, shipped_dir)
    return items


def _check_refined(items, path, shipped_dir) -> None:
    """Each refiner entry refines a known model: shipped weights, or a weights entry of the list."""
    refiners = [(i, m) for i, m in enumerate(items) if m.kind == "refiner"]
    if not refiners:
        return
    from .sidecar import SHIPPED_MODELS_DIR

    folder = Path(shipped_dir) if shipped_dir is not None else SHIPPED_MODELS_DIR
    stem = lambda name: name[: -len(".safetensors")]  # noqa: E731
    known = {stem(p.name) for p in folder.glob("*.safetensors") if not p.name.endswith(REFINER_SUFFIX)}
    known |= {stem(m.file) for m in items if m.kind == "model" and m.file.endswith(".safetensors")}
    for i, m in refiners:
        if m.refines not in known:
            raise CephError(f"{path.name}: entry {i + 1} ({m.name}) refines {m.refines!r}, a model that is neither "
                            f"shipped (in {folder}) nor listed ({', '.join(sorted(known)) or 'none'})")


def find(name, items) -> Download:
    """The entry called `name` (or whose file is `name`), model or refiner; CephError listing the names otherwise."""
    for item in items:
        if name in (item.name, item.file):
            return item
    known = ", ".join(m.name for m in items) or "none are listed yet"
    raise CephError(f"no downloadable model {name!r} (downloadable: {known})")


def is_installed(item: Download, folder) -> bool:
    """Whether `folder` already holds this very file (size and SHA-256)."""
    target = Path(folder) / item.file
    return target.is_file() and target.stat().st_size == item.size and file_sha256(target) == item.sha256


def default_user_dir() -> Path:
    """The command line's per-user model folder: $CEPH_LANDMARKS_MODELS_DIR, else
    $XDG_DATA_HOME/ceph-landmarks/models (~/.local/share/ceph-landmarks/models)."""
    if os.environ.get(USER_DIR_ENV):
        return Path(os.environ[USER_DIR_ENV])
    base = os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share"
    return Path(base) / "ceph-landmarks" / "models"


def fetch(item: Download, folder, progress=None, opener=urllib.request.urlopen) -> Path:
    """Download `item` into `folder` and return its path; a file already there and verified is kept.

    progress(fraction, stage) is called as bytes arrive.  CephError, one line, for an HTTP error, an
    unreachable server, a truncated transfer, a size or SHA-256 other than the list's, or a different
    file already at the target; nothing is left behind (the temporary file is removed)."""
    folder = Path(folder)
    target = folder / item.file
    if target.exists():
        if is_installed(item, folder):
            return target
        raise CephError(f"{target} exists and is not {item.name} {item.version} (its SHA-256 differs); "
                        "move it away to download the model")
    tmp = temp_path(target)
    try:
        digest = _transfer(item, tmp, progress, opener)
        if digest != item.sha256:
            raise CephError(f"download of {item.name} refused: its SHA-256 {digest[:12]}... is not the listed "
                            f"{item.sha256[:12]}... (a wrong or altered file)")
        os.replace(tmp, target)
        _sync_folder(folder)
    finally:
        tmp.unlink(missing_ok=True)
    return target


def _transfer(item: Download, tmp: Path, progress, opener) -> str:
    """Copy the URL's body into `tmp` (flushed to disk); its SHA-256.  Checks the size as it goes."""
    h, n = hashlib.sha256(), 0
    try:
        with opener(item.url, timeout=TIMEOUT_S) as response, open(tmp, "wb") as f:
            while chunk := response.read(CHUNK_BYTES):
                n += len(chunk)
                if n > item.size:
                    raise CephError(f"download of {item.name} refused: larger than the listed {item.size} bytes")
                h.update(chunk)
                f.write(chunk)
                if progress:
                    progress(n / item.size, f"downloading {item.name}")
            f.flush()
            os.fsync(f.fileno())
    except urllib.error.HTTPError as e:
        raise CephError(f"download of {item.name} failed: HTTP {e.code} {e.reason} ({item.url})") from None
    except urllib.error.URLError as e:
        raise CephError(f"cannot download {item.name}: {e.reason} ({item.url})") from None
    except http.client.IncompleteRead as e:
        n += len(e.partial)
        raise CephError(f"download of {item.name} is truncated: {n} of {item.size} bytes arrived") from None
    except (http.client.HTTPException, TimeoutError, ConnectionError) as e:
        raise CephError(f"download of {item.name} was interrupted ({type(e).__name__}: {e}); nothing kept") from None
    if n < item.size:
        raise CephError(f"download of {item.name} is truncated: {n} of {item.size} bytes arrived")
    return h.hexdigest()


def _sync_folder(folder: Path) -> None:
    """Flush the rename to disk where the platform allows (POSIX: fsync the folder)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
