"""The Training section's command lines: `ceph-landmarks train|calibrate|evaluate` built from its
fields, which are checked first, so that a missing folder or file is one line in an error box
rather than a process that fails.  (Adapt's command line: adapt.py.)"""

import os

from .i18n import tr as _
from .process import cliCommand


def trainingCommand(python, command, dataset, modelPath, epochs=40, inputSize="320x416", device="auto",
                    split="test1", outFolder=None) -> list:
    """The command line of `command` ("train", "calibrate" or "evaluate") run by `python`; ValueError
    (translated, for the user) when a field is missing or names nothing."""
    if not dataset:
        raise ValueError(_("Choose the dataset folder."))
    if not os.path.isdir(dataset):
        raise ValueError(_("The dataset folder does not exist: {p}").format(p=dataset))
    if not modelPath:
        raise ValueError(_("Choose the model file (.safetensors)."))
    if command == "train":
        return cliCommand(python, "train", "--dataset", dataset, "--out", modelPath, "--epochs", epochs,
                          "--input-size", inputSize, "--device", device, "--progress")
    if not os.path.isfile(modelPath):
        raise ValueError(_("The model file does not exist: {p}").format(p=modelPath))
    if command == "calibrate":  # into the model file itself, so that Evaluate, which takes that file, sees it
        return cliCommand(python, "calibrate", "--model", modelPath, "--dataset", dataset, "--out", modelPath,
                          "--progress")
    if not outFolder:
        raise ValueError(_("Choose a folder for the evaluation plots."))
    return cliCommand(python, "evaluate", "--model", modelPath, "--dataset", dataset, "--split", split,
                      "--out", outFolder, "--device", "cpu" if device == "auto" else device, "--progress")
