"""The per-landmark calibrated heatmaps a landmarks node keeps, so that its measurements can be
recomputed from its current points at any time, also after a scene reload (review.py).

They are float32 (L, h, w) in model pixels (19 x 480 x 384: 14 MB in memory, about 12 MB as the
gzipped .nrrd in a .mrb: softmax tails compress poorly; kept exact so that recomputed numbers
equal the detection-time ones), in a hidden scalar volume ("... landmark maps", HideFromEditors,
role CephLandmarksMaps; replaced when a detection is redone on the node), with the ModelFrame in
the detection record.  Scenes saved before this was kept have neither (`canRecomputeMeasurements`).

MRML only: no qt, no slicer.app; it runs headless under slicer-core.
"""

import numpy as np
import slicer
import vtk
from vtk.util import numpy_support

from .record import MAPS_REFERENCE, detectionRecord, frameRecord, setRecord
from .volumes import arrayToMatrix


def modelToPixelMatrix(frame):
    """4x4: model pixel (u, v, k, 1) -> image pixel (x, y, k, 1), mirroring of left-facing images included."""
    m = frame.model_to_image_matrix()
    return np.array([[m[0, 0], m[0, 1], 0, m[0, 2]], [m[1, 0], m[1, 1], 0, m[1, 2]], [0, 0, 1, 0], [0, 0, 0, 1.0]])


def storeLandmarkMaps(scene, detection, landmarksNode):
    """Keep the detection's calibrated heatmaps (L, h, w) as float32 in a hidden scalar volume of L slices
    (HideFromEditors, so no node selector lists it), referenced by the landmarks node (role
    CephLandmarksMaps) and saved with the scene; replaces the node's earlier one.  Also records the
    model frame.  Returns the volume node."""
    record = detectionRecord(landmarksNode)
    record["model_frame"] = frameRecord(detection.frame)
    setRecord(landmarksNode, record)
    old = landmarksNode.GetNodeReference(MAPS_REFERENCE)
    if old is not None:
        scene.RemoveNode(old)
    probs = np.ascontiguousarray(detection.probs, dtype=np.float32)
    count, h, w = probs.shape
    imageData = vtk.vtkImageData()
    imageData.SetDimensions(w, h, count)
    imageData.GetPointData().SetScalars(numpy_support.numpy_to_vtk(probs.ravel(), deep=True,
                                                                   array_type=vtk.VTK_FLOAT))
    maps = slicer.vtkMRMLScalarVolumeNode()
    maps.SetName(scene.GenerateUniqueName(f"{landmarksNode.GetName()} landmark maps"))
    maps.SetHideFromEditors(True)  # set before adding: selectors never see it
    maps.SetAttribute("CephLandmarks.Role", "per-landmark calibrated heatmaps, slice k = landmark k + 1")
    maps.SetAndObserveImageData(imageData)
    # Slice 0 lies over the radiograph like the heatmap volume.  The slice axis is chosen so that the
    # matrix is right-handed: volume files keep a left-handed one (a mirrored frame) by reversing the slices.
    ijkToRAS = np.asarray(record["pixel_to_ras"]) @ modelToPixelMatrix(detection.frame)
    column, row = (ijkToRAS[:3, a] / max(np.linalg.norm(ijkToRAS[:3, a]), 1e-12) for a in (0, 1))
    ijkToRAS[:3, 2] = np.cross(column, row) * max(np.linalg.norm(ijkToRAS[:3, 2]), 1e-3)
    maps.SetIJKToRASMatrix(arrayToMatrix(ijkToRAS))
    maps = scene.AddNode(maps)
    landmarksNode.SetNodeReferenceID(MAPS_REFERENCE, maps.GetID())
    return maps


def landmarkMaps(landmarksNode):
    """The stored heatmaps (L, h, w) float32 (a view of the volume's data), or None if the node has none."""
    maps = landmarksNode.GetNodeReference(MAPS_REFERENCE) if landmarksNode else None
    imageData = maps.GetImageData() if maps is not None else None
    if imageData is None or imageData.GetPointData().GetScalars() is None:
        return None
    w, h, count = imageData.GetDimensions()
    return numpy_support.vtk_to_numpy(imageData.GetPointData().GetScalars()).reshape(count, h, w)


def canRecomputeMeasurements(landmarksNode):
    """True if the node keeps what recomputing its measurements needs (heatmaps and model frame);
    scenes saved before this was kept do not."""
    record = detectionRecord(landmarksNode)
    maps = landmarkMaps(landmarksNode)
    return bool(record and record.get("model_frame") and maps is not None
                and len(maps) == len(record["landmarks"]))
