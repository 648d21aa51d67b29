"""The review loop feeding adaptation: *Add to clinic dataset* and *Adapt*, the Slicer side.

Headless like mrml.py (MRML classes, numpy and CephLandmarksLib; no qt, no slicer.app):

- `clinicCase` turns a reviewed landmarks node into what `CephLandmarksLib.annotations.clinic_dataset.add_case`
  writes: the radiograph's grey pixels as detection read them (`mrml.radiographFromVolume`), the
  *current* (corrected) points in image pixels (`mrml.landmarkRows`: the node's positions through the
  inverse of the pixel-to-RAS matrix detection placed them with), the detection's spacing and the
  volume's placement.  It refuses, with one line, a point without a position, a spacing that was
  only assumed, and a volume that is not the detected image.
- `unreviewedFlagged`: flagged points the user neither marked reviewed nor moved (the module asks
  before adding a detection that has some).
- `adaptedModelPath`, `adaptCommand`: where Adapt writes (the per-user model folder, a new name,
  never the base file) and the `ceph-landmarks adapt` command line.
- `adaptationSummary`, `modelListItems`: an adapted model's clinic figures (its "adaptation"
  metadata) for the model list's tooltip (its label, kind "adapted", is the registry's).
"""

import re
from pathlib import Path

import numpy as np

from CephLandmarksLib.annotations.clinic_dataset import add_case, safe_id
from CephLandmarksLib.errors import CephError

from .process import cliCommand

ADAPTED_INFIX = "-adapted-"
MODEL_SUFFIX = ".safetensors"
REPORT_SUFFIX = ".report"  # `adapt` writes its report beside the model: OUT with this suffix


# --- Add to clinic dataset ---------------------------------------------------------------------


def unreviewedFlagged(landmarksNode) -> list:
    """Abbreviations of the flagged points that were neither marked reviewed nor corrected."""
    from . import mrml  # MRML work: imported on use (the model list at start-up needs none of it)

    return [row["abbreviation"] for row in mrml.landmarkRows(landmarksNode)
            if row["flagged"] and not row.get("reviewed") and not row.get("edited")]


def clinicCase(landmarksNode, volumeNode=None) -> dict:
    """The arguments of clinic_dataset.add_case for a reviewed landmarks node (CephError if unusable)."""
    from . import mrml

    record = mrml.detectionRecord(landmarksNode)
    if record is None:
        raise CephError("select a landmarks node made by detection")
    volumeNode = volumeNode or landmarksNode.GetNodeReference(mrml.VOLUME_REFERENCE)
    if volumeNode is None:
        raise CephError("the landmarks' radiograph is not in the scene")
    if record.get("spacing_source") == "assumed":
        raise CephError(f"the pixel spacing of '{volumeNode.GetName()}' is unknown (0.1 mm was assumed): set "
                        "Pixel spacing and detect again before adding it to a clinic dataset")
    radiograph = mrml.radiographFromVolume(volumeNode)
    width, height = record["image_size_px"]
    if radiograph.pixels.shape != (height, width):
        raise CephError(f"volume '{volumeNode.GetName()}' is not the image the landmarks were detected on")
    rows = sorted(mrml.landmarkRows(landmarksNode), key=lambda r: r["index"])
    points = np.array([[row["x_px"], row["y_px"]] if row.get("present") else [np.nan, np.nan] for row in rows],
                      dtype=float)
    return {"image_id": volumeNode.GetName(), "pixels": radiograph.pixels, "points_px": points,
            "spacing_mm": tuple(float(s) for s in record["spacing_mm"]),
            "landmark_abbreviations": [row["abbreviation"] for row in rows],
            "origin_lps": radiograph.origin_lps, "direction_lps": radiograph.direction_lps}


def addToClinicDataset(landmarksNode, folder, replace=False, volumeNode=None):
    """Write the node's radiograph and current points into the clinic dataset `folder`
    (clinic_dataset.add_case: whole or nothing; DuplicateCase unless replace).  Returns AddedCase."""
    if not folder:
        raise CephError("choose the clinic dataset folder first")
    return add_case(folder, replace=replace, **clinicCase(landmarksNode, volumeNode))


# --- Adapt -------------------------------------------------------------------------------------


def reportFolder(outPath) -> Path:
    """Where `ceph-landmarks adapt` writes its report (markdown and PNGs) for the model outPath."""
    return Path(outPath).with_suffix(REPORT_SUFFIX)


def adaptedModelPath(modelsDir, basePath, clinicFolder) -> Path:
    """<modelsDir>/<base stem>-adapted-<clinic folder name>.safetensors, with -2, -3, ... if taken
    (by a model or its report folder): never the base file, never an existing model, so whatever
    is found there after a failed or cancelled run was written by that run."""
    modelsDir, basePath = Path(modelsDir), Path(basePath)
    stem = f"{basePath.stem}{ADAPTED_INFIX}{safe_id(Path(clinicFolder).resolve().name)}"
    for n in range(1, 10_000):
        path = modelsDir / f"{stem}{'' if n == 1 else f'-{n}'}{MODEL_SUFFIX}"
        if not (path.exists() or reportFolder(path).exists()) and path.resolve() != basePath.resolve():
            return path
    raise CephError(f"no free model file name for {stem} in {modelsDir}")


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
    """`ceph-landmarks adapt --model BASE --dataset CLINIC --out OUT --progress` (checks the fields first)."""
    checkAdaptInputs(basePath, clinicFolder)
    return cliCommand(python, "adapt", "--model", basePath, "--dataset", clinicFolder, "--out", outPath,
                      "--progress")


def leftovers(outPath) -> list:
    """What a failed or cancelled adapt run may leave: the model file, atomic_write's temporaries
    beside it, the report folder (adaptedModelPath chose a name none of them had)."""
    outPath = Path(outPath)
    found = [p for p in (outPath, reportFolder(outPath)) if p.exists()]
    return found + sorted(outPath.parent.glob(f".{outPath.name}.*.part"))


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


def modelListItems(entries) -> list:
    """(label, path, tooltip) for the model list: the registry's label (an adapted model's kind is
    "adapted") and its tooltip, which for an adapted model ends with its clinic figures."""
    items = []
    for entry in entries:
        summary = adaptationSummary(entry.info, entry.path)
        tooltip = entry.tooltip + ("\n" + summary if summary else "")
        items.append((entry.label, str(entry.path), tooltip))
    return items
