"""*Adapt*, the Slicer side: fine-tuning the selected model on the clinic dataset folder with
`ceph-landmarks adapt` in a background process.

- `adaptedModelPath`, `adaptCommand`, `adaptRun`: where Adapt writes and the `ceph-landmarks adapt`
  command line, fields checked first.  Adapt writes a sidecar (`adapt --out NAME.json`,
  CephLandmarksLib/store/sidecar.py): kilobytes of settings naming the base weights, which stay as
  they are; it lies beside those weights, or in the per-user model folder for shipped weights (the
  CLI's rule).  When cross-validation chooses the fine-tune, the CLI writes the new weights as
  NAME.safetensors beside the sidecar.  Only where that folder cannot be written is a whole model
  file written into the per-user folder instead.  Always a new name, never the base file.
- `leftovers`, `removeLeftovers`: what a failed or cancelled run leaves, removed.
- `adaptationSummary`: an adapted model's clinic figures (its "adaptation" metadata) in one line,
  for the model list's tooltip (models.py) and the Training tab's log.

No qt, no slicer.app, no torch: the adaptation itself runs in the CLI's process.
"""

import os
import re
from pathlib import Path

from CephLandmarksLib.annotations.clinic_dataset import safe_id
from CephLandmarksLib.errors import CephError

from .process import cliCommand

ADAPTED_INFIX = "-adapted-"
MODEL_SUFFIX = ".safetensors"
SIDECAR_SUFFIX = ".json"
REPORT_SUFFIX = ".report"  # `adapt` writes its report beside the model: OUT with this suffix


def reportFolder(outPath) -> Path:
    """Where `ceph-landmarks adapt` writes its report (markdown and PNGs) for the model outPath."""
    return Path(outPath).with_suffix(REPORT_SUFFIX)


def weightsOf(modelPath) -> Path:
    """The weights file a model path stands for: itself, or the weights a sidecar names (no torch)."""
    from CephLandmarksLib.store.sidecar import is_sidecar_path, read_sidecar, weights_path

    modelPath = Path(modelPath)
    return weights_path(modelPath, read_sidecar(modelPath)) if is_sidecar_path(modelPath) else modelPath


def sidecarFolder(modelPath, modelsDir) -> Path:
    """Where a sidecar of this model may lie (the CLI's rule, store/sidecar.py): beside its weights, or,
    for the shipped weights (the extension's own folder), in the per-user model folder."""
    from CephLandmarksLib.store.sidecar import SHIPPED_MODELS_DIR

    folder = weightsOf(modelPath).resolve().parent
    return Path(modelsDir) if folder == SHIPPED_MODELS_DIR.resolve() else folder


def _writable(folder) -> bool:
    folder = Path(folder)
    while not folder.exists() and folder.parent != folder:  # a folder still to be made: its first existing parent
        folder = folder.parent
    return os.access(folder, os.W_OK)


def _taken(path, basePath) -> bool:
    """Whether a name is taken: by a file, its report folder, or (for a sidecar) the fine-tuned weights
    the CLI would write beside it; or whether writing it could touch the base model."""
    path, basePath = Path(path), Path(basePath)
    outputs = [path, reportFolder(path)] + ([path.with_suffix(MODEL_SUFFIX)] if path.suffix == SIDECAR_SUFFIX else [])
    base = {basePath.resolve()} | ({weightsOf(basePath).resolve()} if basePath.suffix == SIDECAR_SUFFIX else set())
    return any(p.exists() or p.resolve() in base for p in outputs)


def adaptedModelPath(modelsDir, basePath, clinicFolder) -> Path:
    """<folder>/<base stem>-adapted-<clinic folder name>.json (a sidecar: sidecarFolder), with -2, -3, ...
    if taken (by a model, its report folder or its fine-tuned weights): never the base file, never an
    existing model, so whatever is found there after a failed or cancelled run was written by that run.
    Where the sidecar's folder cannot be written: <modelsDir>/<...>.safetensors, a whole model file."""
    modelsDir, basePath = Path(modelsDir), Path(basePath)
    folder, suffix = sidecarFolder(basePath, modelsDir), SIDECAR_SUFFIX
    if not _writable(folder):
        folder, suffix = modelsDir, MODEL_SUFFIX
    stem = f"{basePath.stem}{ADAPTED_INFIX}{safe_id(Path(clinicFolder).resolve().name)}"
    for n in range(1, 10_000):
        path = folder / f"{stem}{'' if n == 1 else f'-{n}'}{suffix}"
        if not _taken(path, basePath):
            return path
    raise CephError(f"no free model file name for {stem} in {folder}")


def checkAdaptInputs(basePath, clinicFolder) -> None:
    """CephError (one line) unless a model file and the clinic folder are chosen and exist."""
    if not basePath:
        raise CephError("no model is selected: choose the model to adapt in the model list")
    if not Path(basePath).is_file():
        raise CephError(f"the selected model file does not exist: {basePath}")
    if not clinicFolder:
        raise CephError("choose the clinic dataset folder")
    if not Path(clinicFolder).is_dir():
        raise CephError(f"the clinic dataset folder does not exist: {clinicFolder}")


def adaptCommand(python, basePath, clinicFolder, outPath) -> list:
    """`ceph-landmarks adapt --model BASE --dataset CLINIC --out OUT --progress` (checks the fields first);
    OUT is a sidecar (adaptedModelPath)."""
    checkAdaptInputs(basePath, clinicFolder)
    return cliCommand(python, "adapt", "--model", basePath, "--dataset", clinicFolder, "--out", outPath,
                      "--progress")


def adaptRun(modelsDir, python, basePath, clinicFolder):
    """(command line, adapted model: a sidecar) of one Adapt press: the fields checked, a new file name
    (adaptedModelPath), its folder created."""
    checkAdaptInputs(basePath, clinicFolder)
    output = adaptedModelPath(modelsDir, basePath, clinicFolder)
    commandLine = adaptCommand(python, basePath, clinicFolder, output)
    output.parent.mkdir(parents=True, exist_ok=True)
    return commandLine, output


def leftovers(outPath) -> list:
    """What a failed or cancelled adapt run may leave: the model file (for a sidecar also the fine-tuned
    weights beside it), atomic_write's temporaries beside them, the report folder (adaptedModelPath
    chose a name none of them had)."""
    outPath = Path(outPath)
    written = [outPath] + ([outPath.with_suffix(MODEL_SUFFIX)] if outPath.suffix == SIDECAR_SUFFIX else [])
    found = [p for p in (*written, reportFolder(outPath)) if p.exists()]
    return found + sorted(part for p in written for part in p.parent.glob(f".{p.name}.*.part"))


def removeLeftovers(outPath) -> None:
    import shutil

    for path in leftovers(outPath):
        if path.is_dir():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)


def _number(value):
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def _change(before, after, key, fmt, unit):
    b, a = _number(before.get(key)), _number(after.get(key))
    if b is None and a is None:
        return None
    text = lambda v: "?" if v is None else format(v, fmt)  # noqa: E731
    return f"{text(b)} \u2192 {text(a)}{unit}"


def adaptationSummary(info, modelPath=None) -> str:
    """One line from a model's "adaptation" metadata ("" for a model that was not adapted), e.g.
    'Adapted to clinicA from 20 images (offsets): cross-validated MRE 1.81 → 1.35 mm, SDR 2 mm
    62.1 → 75.3 %, 90 % regions 67 → 90 %, large errors flagged 46 → 85 %'."""
    a = info.get("adaptation") if isinstance(info, dict) else None
    if not isinstance(a, dict) or not a:
        return ""
    clinic = a.get("clinic") or a.get("clinic_name")
    if not clinic and isinstance(a.get("dataset"), str):
        clinic = Path(a["dataset"]).name
    if not clinic and modelPath is not None:
        match = re.search(re.escape(ADAPTED_INFIX) + r"(.+?)(?:-\d+)?$", Path(modelPath).stem)
        clinic = match.group(1) if match else None
    n = a.get("n_images")
    if n is None and isinstance(a.get("clinic_images"), list):
        n = len(a["clinic_images"])
    head = "Adapted" + (f" to {clinic}" if clinic else "") + (f" from {n} images" if n is not None else "")
    if a.get("method"):
        head += f" ({a['method']})"
    before = a.get("cv_before") if isinstance(a.get("cv_before"), dict) else {}
    after = a.get("cv_after") if isinstance(a.get("cv_after"), dict) else {}
    changes = [(label, _change(before, after, key, fmt, unit)) for label, key, fmt, unit in (
        ("cross-validated MRE", "mre_mm", ".2f", " mm"),
        ("SDR 2 mm", "sdr_2mm_percent", ".1f", " %"),
        ("90 % regions", "coverage_90_percent", ".0f", " %"),
        ("50 % regions", "coverage_50_percent", ".0f", " %"),
        ("large errors flagged", "large_errors_flagged_percent", ".0f", " %"),
        ("good points flagged", "good_points_flagged_percent", ".0f", " %"))]
    changes = [f"{label} {change}" for label, change in changes if change]
    return head + (": " + ", ".join(changes) if changes else "")
