"""The model registry: which model files there are, for the CLI and the Slicer module alike.

Imports neither torch nor safetensors (nor anything that does): Slicer lists the models at
start-up, before the Python packages detection needs may be installed.

Five kinds of model:

- "shipped": the ``*.safetensors`` files in ``Resources/Models`` next to the library
  (``Path(CephLandmarksLib.__file__).parent.parent / "Resources" / "Models"``, in the source
  tree and in the installed extension alike);
- "imported": copies a user imported into a per-user folder, as ``<stem>-<sha12>.safetensors``;
- "trained": files the Training tab wrote at a path the user chose; they stay where they are;
- "adapted": a user model (imported or trained) whose metadata records a clinic adaptation (the
  non-empty "adaptation" that ``ceph-landmarks adapt`` writes).  It is stored like the others;
  only its label and provenance line differ;
- "downloaded": a model listed in ``downloads.json`` (download.py) fetched into the per-user folder,
  verified by its SHA-256.

A weights file's sidecars (``*.json`` beside it, sidecar.py) are entries of their own: the same
weights with the sidecar's settings.  A second stage trained behind a model is a refiner,
``<weights stem>.refiner.safetensors``; it is not a model and is never listed as one.  Which refiner a
model runs by default is ``default_refiner``'s one answer, for the CLI and Slicer alike: the one of
that name in the per-user model folder (a download, or Slicer's "Train second stage" for a shipped
model, whose folder is never written) when its header says it was trained for these very weights, else
the one beside the weights (``refiner_beside``; ``detect --refine auto`` takes it).

The per-user folder holds a manifest, ``models.json``, recording the SHA-256 of each user model
(see ModelRegistry). A user model whose file is missing or changed is left out of the list with
a warning.

The registry checks only a model file's header (``read_model_info``): that it is a safetensors
file carrying CephLandmarks metadata of the supported format, and that the file is as long as
the header says. The full checksum of the weights is verified when a model is loaded for
detection (``modelfile.load_model``), which needs torch.
"""

import hashlib
import json
import logging
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import CephError
from ..files import atomic_write, file_sha256
from . import download
from .entry_text import tooltip as _tooltip
from .header import (  # noqa: F401 - re-exported: callers import them from here
    MAX_HEADER_BYTES,
    REFINER_FORMAT,
    REFINER_META_KEY,
    read_model_info,
)
from .header import read_refiner_base_model as refiner_base_model
from .modelmeta import FORMAT, META_KEY  # noqa: F401 - re-exported
from .sidecar import SHIPPED_MODELS_DIR as _SHIPPED
from .sidecar import SUFFIX as SIDECAR_SUFFIX
from .sidecar import apply, is_sidecar_path, read_sidecar, weights_path
from .sidecar import document as _sidecar_document_of

MANIFEST_NAME = "models.json"
MANIFEST_FORMAT = "ceph-landmarks-models/2"

SHIPPED_MODELS_DIR = _SHIPPED  # CephLandmarksLib/../Resources/Models (one definition, in sidecar.py)
KINDS = ("shipped", "imported", "trained", "adapted", "downloaded")

log = logging.getLogger(__name__)


def read_info(path) -> dict:
    """The metadata of a model path: a weights file's (read_model_info), or for a sidecar (``*.json``)
    its weights file's with the sidecar's settings in their place, after checking they belong together."""
    if not is_sidecar_path(path):
        return read_model_info(path)
    doc = read_sidecar(path)
    return apply(read_model_info(weights_path(path, doc)), doc, path)


@dataclass
class ModelEntry:
    """One model as a list shows it."""

    path: Path
    kind: str  # one of KINDS
    name: str
    version: str
    label: str  # e.g. "isbi2015-384x480 (shipped)"
    tooltip: str  # one or two lines: name, version, landmarks, metrics; provenance for user models
    sha256: str | None = None  # of the whole file; recorded for user models, None for shipped ones
    info: dict = field(default_factory=dict, repr=False)  # the metadata (read_info: a sidecar's merged in)
    weights: Path | None = None  # for a sidecar: the weights file it names (None: `path` is the weights file)


@dataclass
class RefinerEntry:
    """A downloaded refiner: the second stage of the model whose weights' stem is `refines`."""

    path: Path
    name: str
    version: str
    refines: str


def _is_adapted(info) -> bool:
    """Whether a model's metadata records a clinic adaptation (a non-empty "adaptation" object)."""
    adaptation = info.get("adaptation")
    return isinstance(adaptation, dict) and bool(adaptation)


def _user_kind(stored_as, info) -> str:
    """The kind of a user model stored as "imported" or "trained": "adapted" when its metadata
    says so, whichever way it came (the label should say what the model is)."""
    return "adapted" if _is_adapted(info) else stored_as


def _entry(path, kind, info, sha256=None) -> ModelEntry:
    """A list entry; a sidecar is an entry of its own, labelled with its file name (its weights file
    is listed too, with the settings embedded in it)."""
    path = Path(path)
    name = str(info.get("name") or path.stem)
    version = str(info.get("version", ""))
    label, tooltip, weights = f"{name} ({kind})", _tooltip(kind, name, version, info), None
    if is_sidecar_path(path):
        weights = weights_path(path, read_sidecar(path))
        label = f"{name} ({kind}, settings {path.name})"
        tooltip += f"\nSettings from the sidecar {path.name} (weights {weights.name})"
    return ModelEntry(path=path, kind=kind, name=name, version=version, label=label, tooltip=tooltip,
                      sha256=sha256, info=info, weights=weights)


def model_path_or_download(model, user_dir=None, progress=None) -> Path:
    """The model a `--model` names: the path as given, or, when no such file exists and it is the name of a
    listed downloadable model, that model, fetched into the per-user folder on first use (verified)."""
    path = Path(model)
    if path.exists() or path.suffix or len(path.parts) > 1:
        return path  # a file name: load_model names any problem
    try:
        listed = any(str(model) in (d.name, d.file) for d in download.downloadable() if d.kind == "model")
    except CephError:
        listed = False
    if not listed:
        return path
    return ModelRegistry(user_dir or download.default_user_dir()).download(str(model), progress).path


REFINER_SUFFIX = download.REFINER_SUFFIX  # a second stage: <weights stem>.refiner.safetensors (refiner_beside)


def _model_files(folder) -> list[Path]:
    """The model weights in a folder, by name: its ``*.safetensors`` files but the refiners beside them."""
    return sorted(p for p in Path(folder).glob("*.safetensors") if not p.name.endswith(REFINER_SUFFIX))


def _weights_of(model_path) -> Path:
    """The weights file of a model path: itself, or the one a sidecar names."""
    path = Path(model_path)
    return weights_path(path, read_sidecar(path)) if is_sidecar_path(path) else path


def refiner_beside(model_path) -> Path:
    """Where the second stage of a model lies by convention: ``<stem>.refiner.safetensors`` beside its
    weights (a sidecar's: the weights file it names)."""
    path = _weights_of(model_path)
    stem = path.name[: -len(".safetensors")] if path.name.endswith(".safetensors") else path.stem
    return path.with_name(stem + REFINER_SUFFIX)


def default_refiner(model_path, adapted_choice: bool = True, user_dir=None) -> Path | None:
    """The second stage a model runs with by default, or None (the first stage alone).  The one answer for
    `detect`, `report`, `evaluate`, `adapt` (and so the batch workers) and Slicer's Detect, in this order:

    1. ``<weights stem>.refiner.safetensors`` in the per-user model folder (`user_dir`; default
       download.default_user_dir(): $CEPH_LANDMARKS_MODELS_DIR, else ~/.local/share/ceph-landmarks/models),
       where a downloaded refiner and Slicer's "Train second stage" of a shipped model go (the shipped
       folder is never written): the user's own choice comes first.  It is taken only if its header's
       base_model.file_sha256 is the SHA-256 of the model's weights file; a refiner of other weights, or a
       file that is no refiner, is ignored with a one-line warning, never an error;
    2. else the file of that name beside the model's weights (refiner_beside), as it is.

    A clinic adaptation fitted without the refiner found keeps the first stage (its flags and regions
    were fitted on the first stage's maps); adapted_choice=False ignores that, for a model adapted from."""
    beside = refiner_beside(model_path)
    path = _user_refiner(_weights_of(model_path), beside, user_dir)
    if path is None:
        if not beside.is_file():
            return None
        path = beside
    adaptation = (read_info(model_path).get("adaptation") or {}) if adapted_choice else {}
    if adaptation and adaptation.get("refiner_sha256") != file_sha256(path):
        return None
    return path


def _user_refiner(weights, beside: Path, user_dir) -> Path | None:
    """The refiner of beside's name in the per-user folder if it was trained for `weights` (default_refiner's
    step 1); the one beside the weights is that very file for a model kept in the user folder."""
    folder = Path(user_dir) if user_dir is not None else download.default_user_dir()
    candidate = folder / beside.name
    if not candidate.is_file():
        return None
    if candidate.resolve() == beside.resolve():
        return candidate
    instead = "the one beside the weights runs instead" if beside.is_file() else "so the first stage runs"
    try:
        base = refiner_base_model(candidate).get("file_sha256")
        actual = weights_file_sha256(weights)
    except CephError as e:
        log.warning(f"CephLandmarks: {e}; ignored, {instead}")
        return None
    except OSError:  # no weights file: loading the model names the problem
        return None
    if base != actual:
        log.warning(f"CephLandmarks: {candidate} is the second stage of other weights (SHA-256 "
                    f"{str(base)[:12]}...) than {weights.name} ({actual[:12]}...); ignored, {instead}")
        return None
    return candidate


_SHA256_CACHE: dict = {}  # (path, size, mtime, inode) -> the file's SHA-256


def weights_file_sha256(path) -> str:
    """The SHA-256 of a whole file, remembered for the process while its size, time and inode stay: a
    model's 47 MB are hashed once (about 0.25 s on one core), not at every Detect.  OSError if unreadable."""
    path = Path(path).resolve()
    st = path.stat()
    key = (str(path), st.st_size, st.st_mtime_ns, st.st_ino)
    if key not in _SHA256_CACHE:
        if len(_SHA256_CACHE) > 64:
            _SHA256_CACHE.clear()
        _SHA256_CACHE[key] = file_sha256(path)
    return _SHA256_CACHE[key]


def shipped_models_dir() -> Path:
    """The folder of the models shipped with the library/extension."""
    return SHIPPED_MODELS_DIR


def shipped_models(models_dir=None) -> list[ModelEntry]:
    """The shipped models, sorted by file name, each weights file followed by its sidecars (``*.json``
    beside it, by name); a broken one is left out with a warning."""
    folder = Path(models_dir) if models_dir is not None else shipped_models_dir()
    entries = []
    for path in _model_files(folder):
        try:
            entries.append(_entry(path, "shipped", read_model_info(path)))
        except CephError as e:
            log.warning(f"CephLandmarks: shipped model left out: {e}")
            continue
        for side in sidecars_of(path):
            try:
                entries.append(_entry(side, "shipped", read_info(side)))
            except CephError as e:
                log.warning(f"CephLandmarks: shipped model sidecar left out: {e}")
    return entries


def sidecars_of(weights) -> list[Path]:
    """The sidecars beside a weights file that name it, by file name (other JSON files are not looked at
    further than their weights_file)."""
    weights = Path(weights)
    found = []
    for path in sorted(weights.parent.glob(f"*{SIDECAR_SUFFIX}")):
        try:
            if read_sidecar(path)["weights_file"] == weights.name:
                found.append(path)
        except CephError:
            continue
    return found


def default_model_path(models_dir=None) -> Path:
    """The first shipped model file (by name); CephError if there is none."""
    folder = Path(models_dir) if models_dir is not None else shipped_models_dir()
    models = _model_files(folder)
    if not models:
        raise CephError(
            f"no default model is installed (looked in {folder}); "
            "pass --model FILE, or train one with `ceph-landmarks train`"
        )
    return models[0]


class ModelRegistry:
    """The shipped models plus a user's imported and trained ones.

    ``user_dir/models.json`` (written atomically)::

        {"format": "ceph-landmarks-models/2",
         "imported": {"<file name in user_dir>": "<sha256>", ...},
         "trained": {"<absolute path>": "<sha256>", ...}}

    The older flat form ``{"<file name in user_dir>": "<sha256>"}`` (imported models only) is
    still read, and rewritten in the new form on the next change. A manifest that cannot be read
    gives one warning and an empty user list; the next change keeps it as ``models.json.corrupt``.
    """

    def __init__(self, user_dir, shipped_dir=None, downloads=None):
        self.user_dir = Path(user_dir)
        self.shipped_dir = Path(shipped_dir) if shipped_dir is not None else shipped_models_dir()
        self.downloads_list = downloads  # the list of downloadable models (None: the shipped downloads.json)

    @property
    def manifest_path(self) -> Path:
        return self.user_dir / MANIFEST_NAME

    # manifest

    def _read_manifest(self) -> tuple[dict, dict, bool]:
        """(imported, trained, ok): ok is False when a manifest exists but cannot be used."""
        path = self.manifest_path
        if not path.is_file():
            return {}, {}, True
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            imported, trained = _parse_manifest(data)
        except (OSError, UnicodeDecodeError, ValueError) as e:
            log.warning(f"CephLandmarks: the model manifest {path} cannot be read ({e}); user models ignored")
            return {}, {}, False
        return imported, trained, True

    def _write_manifest(self, imported, trained, ok=True):
        if not ok and self.manifest_path.is_file():
            backup = self.manifest_path.with_name(MANIFEST_NAME + ".corrupt")
            os.replace(self.manifest_path, backup)
            log.warning(f"CephLandmarks: the unreadable model manifest was kept as {backup}")
        data = {"format": MANIFEST_FORMAT, "imported": dict(sorted(imported.items())), "trained": trained}
        text = json.dumps(data, indent=2, allow_nan=False) + "\n"
        atomic_write(self.manifest_path, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))

    # listing

    def models(self) -> list[ModelEntry]:
        """Shipped models first, then imported ones (by file name), then trained ones (in the order
        they were registered); an adapted model is listed where it is stored. A user model whose
        file is missing, changed (SHA-256) or no longer a valid model is left out with a warning."""
        entries = shipped_models(self.shipped_dir)
        imported, trained, _ = self._read_manifest()
        fetched = {(d.file, d.sha256) for d in self._downloadable_or_none()}
        for name, sha256 in sorted(imported.items()):
            kind = "downloaded" if (name, sha256) in fetched else "imported"
            entry = self._user_entry(self.user_dir / name, kind, sha256)
            if entry:
                entries.append(entry)
        for name, sha256 in trained.items():
            entry = self._user_entry(Path(name), "trained", sha256)
            if entry:
                entries.append(entry)
        _disambiguate(entries)
        return entries

    @staticmethod
    def _user_entry(path, kind, sha256):
        if not path.is_file():
            log.warning(f"CephLandmarks: {kind} model {path} is missing; left out")
            return None
        try:
            actual = file_sha256(path)
            info = read_info(path)
        except CephError as e:
            log.warning(f"CephLandmarks: {kind} model left out: {e}")
            return None
        except OSError as e:
            log.warning(f"CephLandmarks: {kind} model {path} cannot be read ({e.strerror or e}); left out")
            return None
        if actual != sha256:
            log.warning(f"CephLandmarks: {kind} model {path} has changed since it was recorded (SHA-256); left out")
            return None
        return _entry(path, _user_kind(kind, info), info, sha256)

    # downloads

    def downloadable(self) -> list:
        """The downloadable models and refiners (download.Download) not yet in user_dir, in the list's order."""
        return [d for d in download.downloadable(self.downloads_list, self.shipped_dir)
                if not download.is_installed(d, self.user_dir)]

    def _downloadable_or_none(self) -> list:
        try:
            return download.downloadable(self.downloads_list, self.shipped_dir)
        except CephError as e:
            log.warning(f"CephLandmarks: {e}")
            return []

    def refiner_downloads(self) -> list:
        """(download.Download, path in user_dir or None) for each listed refiner, downloaded or not; a bad list
        gives a warning and none."""
        return [(d, self.user_dir / d.file if download.is_installed(d, self.user_dir) else None)
                for d in self._downloadable_or_none() if d.kind == "refiner"]

    def download(self, name, progress=None, opener=None):
        """Fetch a listed model into user_dir (verified; see download.fetch) and record it; a model already
        there is only recorded.  A listed refiner is fetched the same way and returned as a RefinerEntry:
        it is not recorded as a model; default_refiner finds it there by its name.  CephError, one line,
        when it cannot be had."""
        item = download.find(name, download.downloadable(self.downloads_list, self.shipped_dir))
        kwargs = {"opener": opener} if opener else {}
        path = download.fetch(item, self.user_dir, progress, **kwargs)
        if item.kind == "refiner":
            try:
                refiner_base_model(path)
            except CephError:
                path.unlink(missing_ok=True)
                raise CephError(f"{item.name} is listed as a refiner, but the published file is not a refiner "
                                f"file ({REFINER_FORMAT}); removed") from None
            return RefinerEntry(path=path, name=item.name, version=item.version, refines=item.refines)
        sha256 = file_sha256(path)
        info = read_info(path)  # a sidecar's weights must be there already
        imported, trained, ok = self._read_manifest()
        if imported.get(path.name) != sha256 or not ok:
            imported[path.name] = sha256
            self._write_manifest(imported, trained, ok)
        return _entry(path, "downloaded", info, sha256)

    # changes

    def import_model(self, path) -> ModelEntry:
        """Check a model file's header, copy it into user_dir as <stem>-<sha12>.safetensors
        (atomically) and record its SHA-256. Importing the same file again changes nothing."""
        path = Path(path)
        if is_sidecar_path(path):
            return self._import_sidecar(path)
        info = read_model_info(path)  # raises CephError naming the problem
        sha256 = file_sha256(path)
        stem = path.stem
        if stem.endswith(f"-{sha256[:12]}"):  # already one of our copies
            stem = stem[: -len(sha256[:12]) - 1]
        target = self.user_dir / f"{stem}-{sha256[:12]}.safetensors"
        if not (target.is_file() and file_sha256(target) == sha256):
            atomic_write(target, lambda tmp: shutil.copyfile(path, tmp))
        imported, trained, ok = self._read_manifest()
        if imported.get(target.name) != sha256 or not ok:
            imported[target.name] = sha256
            self._write_manifest(imported, trained, ok)
        log.info(f"CephLandmarks: imported model {info.get('name')} {info.get('version')} as {target}")
        return _entry(target, _user_kind("imported", info), info, sha256)

    def _import_sidecar(self, path) -> ModelEntry:
        """A sidecar is imported with its weights file: the weights as import_model copies them, the
        sidecar as <stem>-<sha12>.json naming that copy."""
        doc = read_sidecar(path)
        read_info(path)  # the sidecar fits its weights
        weights = self.import_model(weights_path(path, doc))
        copy = _sidecar_document(weights.path.name, doc)
        text = json.dumps(copy, indent=1, allow_nan=False) + "\n"
        stem = path.stem
        target = self.user_dir / f"{stem}-{hashlib.sha256(text.encode()).hexdigest()[:12]}{SIDECAR_SUFFIX}"
        if not target.is_file():
            atomic_write(target, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))
        sha256 = file_sha256(target)
        imported, trained, ok = self._read_manifest()
        imported[target.name] = sha256
        self._write_manifest(imported, trained, ok)
        info = read_info(target)
        return _entry(target, _user_kind("imported", info), info, sha256)

    def register_trained(self, path) -> ModelEntry:
        """Record a model the Training tab (or Adapt) wrote, where it is, with its current SHA-256;
        call it again after the file changed (e.g. recalibrated) to record the new digest.  A sidecar
        (``*.json``) is recorded as a model of its own."""
        path = Path(path).resolve()
        info = read_info(path)
        sha256 = file_sha256(path)
        imported, trained, ok = self._read_manifest()
        if trained.get(str(path)) != sha256 or not ok:
            trained[str(path)] = sha256
            self._write_manifest(imported, trained, ok)
        return _entry(path, _user_kind("trained", info), info, sha256)

    def forget(self, path) -> bool:
        """Drop a user model from the list: an imported copy is deleted from user_dir, a trained
        model's file is left alone. False if the path is not a recorded user model."""
        path = Path(path).resolve()
        imported, trained, ok = self._read_manifest()
        if not ok:
            return False
        found = False
        if str(path) in trained:
            del trained[str(path)]
            found = True
        if path.parent == self.user_dir.resolve() and path.name in imported:
            del imported[path.name]
            found = True
            self._write_manifest(imported, trained)
            path.unlink(missing_ok=True)
        elif found:
            self._write_manifest(imported, trained)
        return found


def _parse_manifest(data) -> tuple[dict, dict]:
    """(imported, trained) from either manifest form; ValueError if it is neither."""
    if not isinstance(data, dict):
        raise ValueError("not a JSON object")
    if "imported" in data or "trained" in data or "format" in data:
        if data.get("format", MANIFEST_FORMAT) != MANIFEST_FORMAT:
            raise ValueError(f"unknown manifest format {data.get('format')!r}")
        imported, trained = data.get("imported", {}), data.get("trained", {})
    else:  # the first form: {file name in user_dir: sha256}
        imported, trained = data, {}
    for table in (imported, trained):
        if not isinstance(table, dict) or not all(isinstance(k, str) and isinstance(v, str)
                                                  for k, v in table.items()):
            raise ValueError("entries must map names to SHA-256 strings")
    if any(Path(name).name != name or name in ("", ".", "..") for name in imported):
        raise ValueError("an imported entry is not a plain file name")
    if any(not Path(name).is_absolute() for name in trained):
        raise ValueError("a trained entry is not an absolute path")
    return dict(imported), dict(trained)


def _sidecar_document(weights_file, doc) -> dict:
    """A sidecar document naming another copy of the same weights."""
    return _sidecar_document_of(weights_file, doc["weights_sha256"], doc["settings"])


def _disambiguate(entries):
    """Two entries with the same label (e.g. the shipped model also imported) get the file name."""
    seen = {}
    for e in entries:
        seen.setdefault(e.label, []).append(e)
    for same in seen.values():
        if len(same) > 1:
            for e in same:
                e.label = f"{e.name} ({e.kind}: {e.path.name})"
