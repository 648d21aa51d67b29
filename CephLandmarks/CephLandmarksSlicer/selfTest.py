"""The module's self-test (CephLandmarksTest, Slicer's Reload and Test), its data and checks: it
needs no data or internet (a synthetic skull-like image without ../shared/data), and asserts
accuracy only on a real radiograph."""

from pathlib import Path

import slicer

from .contours import contourModels
from .markups import isEdited, landmarkRows
from .record import MEASUREMENTS_REFERENCE, TABLE_REFERENCE


def sampleVolume(moduleDir):
    """(volume node, real): a real ISBI radiograph if shared/data is found above moduleDir, else a
    synthetic skull-like image."""
    import numpy as np

    moduleDir = Path(moduleDir)
    for parent in [moduleDir, *moduleDir.parents]:
        sample = parent / "shared" / "data" / "isbi2015" / "RawImage" / "Test1Data" / "151.jpg"
        if sample.is_file():
            return slicer.util.loadVolume(str(sample), {"singleFile": True}), True
    yy, xx = np.mgrid[0:480, 0:384]
    pixels = 200.0 * np.exp(-(((xx - 190) / 120.0) ** 2 + ((yy - 230) / 160.0) ** 2)) + 20.0
    volume = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "synthetic radiograph")
    slicer.util.updateVolumeFromArray(volume, pixels[None].astype(np.float32))
    volume.SetSpacing(0.5, 0.5, 1.0)
    return volume, False


def checkShownDetection(test, node, detection, real):
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
    if real:  # accuracy is only asserted on a real radiograph
        test.assertLess(sum(row["flagged"] for row in landmarkRows(node)), 10)
    test.assertEqual(len(contourModels(node)), 2)
    table = node.GetNodeReference(TABLE_REFERENCE)
    test.assertEqual(table.GetTable().GetNumberOfRows(), 19)
    test.assertIsNotNone(node.GetNodeReference(MEASUREMENTS_REFERENCE))
    test.assertFalse(isEdited(node))
