"""The Training section's command lines: `ceph-landmarks train|calibrate|evaluate` built from its
fields, which are checked first, so that a missing folder or file is one line in an error box
rather than a process that fails.  (Adapt's command line: adapt.py.)

Calibrate writes a calibration sidecar, as the CLI does (CephLandmarksLib/store/sidecar.py,
docs/models.md): the weights file stays byte-identical.  `calibrationSidecar` says which file:
the model field's sidecar itself, or `<weights stem>.calibration.json` beside its weights; never in
the shipped models' folder (the extension's own), whose sidecars go into the per-user model folder.
`CalibrationOutput` keeps what that file held before, so that a failed or cancelled run (the CLI
writes it twice: temperatures, then regions) leaves it as it was."""

import os
from pathlib import Path

from .i18n import tr as _
from .process import cliCommand


def calibrationSidecar(modelPath, modelsDir=None) -> Path:
    """The sidecar `calibrate` writes for the model file or sidecar modelPath (see the module docstring)."""
    from CephLandmarksLib.store.sidecar import SHIPPED_MODELS_DIR, default_path, is_sidecar_path

    model = Path(modelPath)
    target = model if is_sidecar_path(model) else default_path(model)
    if modelsDir is not None and target.resolve().parent == SHIPPED_MODELS_DIR.resolve():
        target = Path(modelsDir) / target.name
    return target


class CalibrationOutput:
    """The sidecar one Calibrate press writes, and its bytes before the run (None: there was none)."""

    def __init__(self, path):
        self.path = Path(path)
        self.previous = self.path.read_bytes() if self.path.is_file() else None

    def restore(self) -> None:
        """After a failed or cancelled run: the sidecar as it was (or none), no temporaries left."""
        from CephLandmarksLib.files import TEMP_NAME_CHARS, TEMP_SUFFIX, atomic_write

        # atomic_write's temporary names keep the first TEMP_NAME_CHARS characters of the target's name
        for part in self.path.parent.glob(f".{self.path.name[:TEMP_NAME_CHARS]}.*{TEMP_SUFFIX}"):
            part.unlink(missing_ok=True)
        if self.previous is None:
            self.path.unlink(missing_ok=True)
        elif not self.path.is_file() or self.path.read_bytes() != self.previous:
            atomic_write(self.path, lambda tmp: Path(tmp).write_bytes(self.previous))


def trainingCommand(python, command, dataset, modelPath, epochs=40, inputSize="320x416", device="auto",
                    split="test1", outFolder=None, modelsDir=None) -> list:
    """The command line of `command` ("train", "calibrate" or "evaluate") run by `python`; ValueError
    (translated, for the user) when a field is missing or names nothing.  modelsDir: the per-user model
    folder, where Calibrate writes the sidecar of a shipped model (calibrationSidecar)."""
    if not dataset:
        raise ValueError(_("Choose the dataset folder."))
    if not os.path.isdir(dataset):
        raise ValueError(_("The dataset folder does not exist: {p}").format(p=dataset))
    if not modelPath:
        raise ValueError(_("Choose the model file (.safetensors)."))
    if command == "train":
        if str(modelPath).lower().endswith(".json"):
            raise ValueError(_("Train writes a weights file: give a .safetensors file name, not the settings "
                               "sidecar {p}.").format(p=modelPath))
        return cliCommand(python, "train", "--dataset", dataset, "--out", modelPath, "--epochs", epochs,
                          "--input-size", inputSize, "--device", device, "--progress")
    if not os.path.isfile(modelPath):
        raise ValueError(_("The model file does not exist: {p}").format(p=modelPath))
    if command == "calibrate":  # into its sidecar: the weights stay byte-identical
        return cliCommand(python, "calibrate", "--model", modelPath, "--dataset", dataset, "--out",
                          calibrationSidecar(modelPath, modelsDir), "--progress")
    if not outFolder:
        raise ValueError(_("Choose a folder for the evaluation plots."))
    return cliCommand(python, "evaluate", "--model", modelPath, "--dataset", dataset, "--split", split,
                      "--out", outFolder, "--device", "cpu" if device == "auto" else device, "--progress")
