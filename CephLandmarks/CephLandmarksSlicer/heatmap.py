"""The heatmap volume: all landmarks' heatmaps in one scalar volume, on the model's pixel grid
placed exactly over the radiograph, which "Show heatmap" puts in the slice views' foreground.

MRML only: no qt, no slicer.app; it runs headless under slicer-core.
"""

import numpy as np
import vtk
from vtk.util import numpy_support

from .maps import modelToPixelMatrix
from .record import HEATMAP_REFERENCE, VOLUME_REFERENCE
from .volumes import arrayToMatrix, pixelToRASMatrix

HEATMAP_ATTRIBUTE = "CephLandmarks.Heatmap"  # marks a heatmap volume: never taken for the input radiograph


def createHeatmapVolume(scene, detection, volumeNode, landmarksNode, colorNodeID="vtkMRMLColorTableNodeIron"):
    """A scalar volume of all heatmaps (each scaled to its maximum, then the maximum over landmarks),
    on the model's pixel grid placed exactly over the radiograph (no resampling)."""
    probs = np.asarray(detection.probs, dtype=np.float32)
    peaks = probs.max(axis=(1, 2), keepdims=True)
    combined = (probs / np.maximum(peaks, 1e-12)).max(axis=0)  # (h, w)
    modelToPixel = modelToPixelMatrix(detection.frame)  # mirroring of left-facing images included
    old = landmarksNode.GetNodeReference(HEATMAP_REFERENCE)
    if old is not None:
        scene.RemoveNode(old)
    heatmap = scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", f"{landmarksNode.GetName()} heatmaps")
    imageData = vtk.vtkImageData()
    h, w = combined.shape
    imageData.SetDimensions(w, h, 1)
    scalars = numpy_support.numpy_to_vtk(combined.ravel(), deep=True, array_type=vtk.VTK_FLOAT)
    imageData.GetPointData().SetScalars(scalars)
    heatmap.SetAndObserveImageData(imageData)
    heatmap.SetIJKToRASMatrix(arrayToMatrix(pixelToRASMatrix(volumeNode) @ modelToPixel))
    heatmap.SetAndObserveTransformNodeID(volumeNode.GetTransformNodeID())
    heatmap.CreateDefaultDisplayNodes()
    display = heatmap.GetDisplayNode()
    display.SetAutoWindowLevel(False)
    display.SetWindowLevelMinMax(0.0, 1.0)
    display.SetApplyThreshold(True)
    display.SetLowerThreshold(0.05)
    display.SetUpperThreshold(1.0)
    if scene.GetNodeByID(colorNodeID) is not None:
        display.SetAndObserveColorNodeID(colorNodeID)
    landmarksNode.SetNodeReferenceID(HEATMAP_REFERENCE, heatmap.GetID())
    return heatmap


def sliceLayers(landmarksNode, showHeatmap):
    """(background, foreground) for the slice views: the node's radiograph, and its heatmap volume
    when showHeatmap and it has one (else None)."""
    heatmap = landmarksNode.GetNodeReference(HEATMAP_REFERENCE)
    volume = landmarksNode.GetNodeReference(VOLUME_REFERENCE)
    return volume, (heatmap if showHeatmap and heatmap is not None else None)
