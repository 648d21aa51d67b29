"""The second stage (a refiner: issue 29) in the panel: which `--refine` a Detect passes, and the Training
tab's "Train second stage" (`ceph-landmarks train-refiner`).

A model's refiner is `<weights stem>.refiner.safetensors`.  Which one a model runs by default is the
library's answer (CephLandmarksLib.store.registry `default_refiner`): the one of that name in the per-user
model folder if its header says it was trained for these weights, else the one beside its weights.  The
shipped models' folder (the extension's own) is never written: "Train second stage" writes a shipped
model's refiner into the per-user model folder (`refinerOutput`, as calibrationSidecar does for a
sidecar), and a refiner downloaded from the model list lands there too.  Detect asks the library with
Slicer's own per-user folder and names its answer explicitly (`refineArguments`: `--refine FILE`, or
`--refine none` when there is none), so the child process never looks in another folder.

The command runs with `--progress` (`[progress] FRACTION STAGE` lines, as every command Slicer runs); it
also logs one JSON record per epoch ({"epoch": N, ...}), which `RefinerOutput.fraction` reads for the
progress bar only when no `[progress]` line came (a train-refiner without --progress lines).

No torch (the registry is torch-free); parses under Python 3.9.
"""

import json
import os
from pathlib import Path

from .i18n import tr as _
from .process import cliCommand, progressFromLine

REFINE_NONE = "none"  # `detect --refine none`: the first stage alone


def refinerOutput(modelPath, modelsDir=None) -> Path:
    """The refiner file "Train second stage" writes for the model file or sidecar modelPath:
    `<weights stem>.refiner.safetensors` beside its weights, or in modelsDir (the per-user model folder)
    when the weights are in the shipped models' folder."""
    from CephLandmarksLib.store.registry import refiner_beside
    from CephLandmarksLib.store.sidecar import SHIPPED_MODELS_DIR

    target = refiner_beside(modelPath)
    if modelsDir is not None and target.resolve().parent == SHIPPED_MODELS_DIR.resolve():
        target = Path(modelsDir) / target.name
    return target


def refineArguments(modelPath, useSecondStage, modelsDir=None) -> list:
    """The `--refine` arguments of a Detect: ["--refine", "none"] with the second stage off; with it on, the
    library's answer for the model and Slicer's per-user model folder modelsDir (registry.default_refiner:
    modelsDir's refiner trained for these weights, else the one beside the weights; not for a clinic
    adaptation fitted without it) as ["--refine", FILE], or ["--refine", "none"] when there is none.  No arguments
    (the library's default) for no model or a broken sidecar: detect names the problem itself."""
    if not useSecondStage:
        return ["--refine", REFINE_NONE]
    if not modelPath:
        return []
    from CephLandmarksLib.errors import CephError
    from CephLandmarksLib.store.registry import default_refiner

    try:
        path = default_refiner(modelPath, user_dir=modelsDir)
    except (CephError, OSError, ValueError):  # a broken sidecar: detect names the problem itself
        return []
    return ["--refine", str(path) if path is not None else REFINE_NONE]


def workFolder(out) -> Path:
    """train-refiner's checkpoint folder for the refiner file `out` (its --work-dir default)."""
    return Path(f"{out}.work")


def refinerCommand(python, dataset, modelPath, modelsDir=None, epochs=30, resume=False):
    """(`ceph-landmarks train-refiner` command line, RefinerOutput); ValueError (translated, for the user)
    for a missing dataset or model, or an existing refiner or checkpoint that a run without Resume would
    overwrite (and Resume with no checkpoint to continue)."""
    if not dataset:
        raise ValueError(_("Choose the dataset folder."))
    if not os.path.isdir(dataset):
        raise ValueError(_("The dataset folder does not exist: {p}").format(p=dataset))
    if not modelPath or str(modelPath).startswith("download:"):
        raise ValueError(_("Choose an installed model in the model list: the second stage is trained behind it."))
    if not os.path.isfile(modelPath):
        raise ValueError(_("The model file does not exist: {p}").format(p=modelPath))
    out = refinerOutput(modelPath, modelsDir)
    checkpoint = workFolder(out) / "last.pt"
    if resume and not checkpoint.is_file():
        raise ValueError(_("Nothing to resume: {p} does not exist. Untick Resume to start anew.").format(p=checkpoint))
    if not resume:
        for existing in (out, checkpoint):
            if existing.exists():
                raise ValueError(_("{p} exists: tick Resume to continue its training, or move it away to train "
                                   "anew.").format(p=existing))
    args = ["--model", modelPath, "--dataset", dataset, "--out", out, "--epochs", int(epochs), "--progress"]
    return cliCommand(python, "train-refiner", *args, *(["--resume"] if resume else [])), \
        RefinerOutput(out, int(epochs))


class RefinerOutput:
    """The refiner file one "Train second stage" press writes, and how many epochs it runs."""

    def __init__(self, path, epochs):
        self.path = Path(path)
        self.epochs = max(1, int(epochs))
        self._progressLines = False  # a `[progress]` line came: epoch records no longer move the bar

    @property
    def workFolder(self) -> Path:
        return workFolder(self.path)

    def fraction(self, line):
        """Fraction done (0-1) from an output line: a `[progress]` line, or, while none came, train-refiner's
        JSON record of an epoch ({"epoch": N, ...}: N of `epochs` done); else None."""
        fraction = progressFromLine(line)
        self._progressLines = self._progressLines or fraction is not None
        if fraction is not None or self._progressLines or not line.lstrip().startswith("{"):
            return fraction
        try:
            record = json.loads(line)
            epoch = int(record["epoch"])
        except (ValueError, KeyError, TypeError):
            return None
        return min(1.0, max(0.0, epoch / self.epochs))

    def removeLeftovers(self) -> None:
        """After a failed or cancelled run: no half-written refiner (the checkpoints stay, for Resume)."""
        from CephLandmarksLib.files import TEMP_NAME_CHARS, TEMP_SUFFIX  # atomic_write's temporary names

        for part in self.path.parent.glob(f".{self.path.name[:TEMP_NAME_CHARS]}.*{TEMP_SUFFIX}"):
            part.unlink(missing_ok=True)
