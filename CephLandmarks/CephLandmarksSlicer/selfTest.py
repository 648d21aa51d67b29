"""The module's self-test (CephLandmarksTest, Slicer's Reload and Test), its data and checks.

It needs no data or internet: a synthetic skull-like image (a shipped module never looks for a
development data set; accuracy on real radiographs is checked by the pytest suite). It skips the
detection, saying why, where the requirements are not installed: the Extensions build machines
run a bare Slicer, and so does a fresh "Reload and Test" before Detect has offered to install them.
"""

from pathlib import Path

import slicer

from .contours import contourModels
from .markups import isEdited, landmarkRows
from .record import MEASUREMENTS_REFERENCE, TABLE_REFERENCE


def missingPackages(moduleDir) -> list:
    """The names of the requirements (Resources/requirements.txt beside the module file) that are not installed."""
    from .dependencies import missingRequirements, readRequirements

    requirements = readRequirements(Path(moduleDir) / "Resources" / "requirements.txt")
    return [name for name, _line in missingRequirements(requirements)]


def skipMessage(missing) -> str:
    return ("Detection skipped: the Python packages it needs are not installed ({p}). Press Detect in the "
            "module's panel to install them, then run the test again.").format(p=", ".join(missing))


def sampleVolume():
    """A synthetic skull-like radiograph (no anatomy: detection runs, its points mean nothing)."""
    import numpy as np

    yy, xx = np.mgrid[0:480, 0:384]
    pixels = 200.0 * np.exp(-(((xx - 190) / 120.0) ** 2 + ((yy - 230) / 160.0) ** 2)) + 20.0
    volume = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "synthetic radiograph")
    slicer.util.updateVolumeFromArray(volume, pixels[None].astype(np.float32))
    volume.SetSpacing(0.5, 0.5, 1.0)
    return volume


def checkShownDetection(test, node, detection):
    """The unittest `test`'s assertions on the landmarks node showing `detection` and its nodes."""
    test.assertEqual(node.GetNumberOfControlPoints(), 19)
    width, height = detection.image_size
    for row in landmarkRows(node):
        test.assertTrue(0.0 <= row["confidence"] <= 1.0)
        test.assertTrue(row["ere_mm"] is None or row["ere_mm"] >= 0.0)
        test.assertTrue(0.0 <= row["p_large_error"] <= 1.0)
        if row.get("missing") or row.get("x_px") is None:  # a synthetic image may lack some anatomy
            test.assertTrue(row["flagged"])
            continue
        test.assertTrue(-0.5 <= row["x_px"] <= width - 0.5)
        test.assertTrue(-0.5 <= row["y_px"] <= height - 0.5)
    test.assertEqual(len(contourModels(node)), 2)
    table = node.GetNodeReference(TABLE_REFERENCE)
    test.assertEqual(table.GetTable().GetNumberOfRows(), 19)
    test.assertIsNotNone(node.GetNodeReference(MEASUREMENTS_REFERENCE))
    test.assertFalse(isEdited(node))


def runDetectionTest(test, logic, moduleDir) -> None:
    """The unittest `test`: detect on the synthetic image with the first model and check what is shown;
    skipped, with its reason, without a model or the requirements."""
    test.delayDisplay("Starting the test")
    models = logic.availableModels()
    if not models:
        test.delayDisplay("No model installed (Resources/Models); skipping detection")
        return
    missing = missingPackages(moduleDir)
    if missing:
        test.delayDisplay(skipMessage(missing))
        return
    volume = sampleVolume()
    detection = logic.detect(volume, models[0].path)
    checkShownDetection(test, logic.showDetection(detection, volume), detection)
    test.delayDisplay("Test passed")
