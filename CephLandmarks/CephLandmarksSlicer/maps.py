"""The per-landmark calibrated heatmaps a landmarks node keeps, so that its measurements can be
recomputed from its current points at any time, also after a scene reload (review.py).

They are float32 (L, h, w) in model pixels (19 x 480 x 384: 14 MB in memory, about 12 MB as the
gzipped .nrrd in a .mrb: softmax tails compress poorly; kept exact so that recomputed numbers
equal the detection-time ones), in a hidden scalar volume ("... landmark maps", HideFromEditors,
role CephLandmarksMaps; replaced when a detection is redone on the node), with the ModelFrame in
the detection record.  Scenes saved before this was kept have neither (`canRecomputeMeasurements`).

With the second stage (`detect --refine`: a detection whose `combined` map holds fine maps over a
crop per landmark) the fine maps are kept too, float32 (L, h, w) in a second hidden volume (role
CephLandmarksFineMaps; 19 x 128 x 128: 1.2 MB), with the crops, inside masses and points in the
record's "fine_maps".  The heatmap volume shows the coarse maps; recomputed measurements draw from
the combined coarse + fine map (`landmarkCombinedMap`), as at detection.

MRML only: no qt, no slicer.app; it runs headless under slicer-core.
"""

import numpy as np
import slicer
import vtk
from vtk.util import numpy_support

from .record import MAPS_REFERENCE, detectionRecord, frameFromRecord, frameRecord, setRecord
from .volumes import arrayToMatrix


def modelToPixelMatrix(frame):
    """4x4: model pixel (u, v, k, 1) -> image pixel (x, y, k, 1), mirroring of left-facing images included."""
    m = frame.model_to_image_matrix()
    return np.array([[m[0, 0], m[0, 1], 0, m[0, 2]], [m[1, 0], m[1, 1], 0, m[1, 2]], [0, 0, 1, 0], [0, 0, 0, 1.0]])


FINE_MAPS_REFERENCE = "CephLandmarksFineMaps"  # hidden volume: the second stage's fine maps (L slices)
FINE_MAPS_KEY = "fine_maps"  # the record's crops, inside masses, refined flags and points of the combined map


def _stacksVolume(scene, stack, name, role):
    """A hidden scalar volume (not yet in the scene) holding a float32 stack (L, h, w), slice k = landmark k + 1."""
    stack = np.ascontiguousarray(stack, dtype=np.float32)
    count, h, w = stack.shape
    imageData = vtk.vtkImageData()
    imageData.SetDimensions(w, h, count)
    imageData.GetPointData().SetScalars(numpy_support.numpy_to_vtk(stack.ravel(), deep=True,
                                                                   array_type=vtk.VTK_FLOAT))
    volume = slicer.vtkMRMLScalarVolumeNode()
    volume.SetName(scene.GenerateUniqueName(name))
    volume.SetHideFromEditors(True)  # set before adding: selectors never see it
    volume.SetAttribute("CephLandmarks.Role", role)
    volume.SetAndObserveImageData(imageData)
    return volume


def _stack(volume):
    """The float32 stack (L, h, w) a hidden volume holds (a view of its data), or None."""
    imageData = volume.GetImageData() if volume is not None else None
    if imageData is None or imageData.GetPointData().GetScalars() is None:
        return None
    w, h, count = imageData.GetDimensions()
    return numpy_support.vtk_to_numpy(imageData.GetPointData().GetScalars()).reshape(count, h, w)


def storeLandmarkMaps(scene, detection, landmarksNode):
    """Keep the detection's calibrated heatmaps (L, h, w) as float32 in a hidden scalar volume of L slices
    (HideFromEditors, so no node selector lists it), referenced by the landmarks node (role
    CephLandmarksMaps) and saved with the scene; replaces the node's earlier one.  Also records the
    model frame, and keeps the second stage's fine maps when the detection has them (storeFineMaps).
    Returns the volume node."""
    record = detectionRecord(landmarksNode)
    record["model_frame"] = frameRecord(detection.frame)
    setRecord(landmarksNode, record)
    old = landmarksNode.GetNodeReference(MAPS_REFERENCE)
    if old is not None:
        scene.RemoveNode(old)
    storeFineMaps(scene, detection, landmarksNode)
    probs = np.ascontiguousarray(detection.probs, dtype=np.float32)
    maps = _stacksVolume(scene, probs, f"{landmarksNode.GetName()} landmark maps",
                         "per-landmark calibrated heatmaps, slice k = landmark k + 1")
    # Slice 0 lies over the radiograph like the heatmap volume.  The slice axis is chosen so that the
    # matrix is right-handed: volume files keep a left-handed one (a mirrored frame) by reversing the slices.
    ijkToRAS = np.asarray(record["pixel_to_ras"]) @ modelToPixelMatrix(detection.frame)
    column, row = (ijkToRAS[:3, a] / max(np.linalg.norm(ijkToRAS[:3, a]), 1e-12) for a in (0, 1))
    ijkToRAS[:3, 2] = np.cross(column, row) * max(np.linalg.norm(ijkToRAS[:3, 2]), 1e-3)
    maps.SetIJKToRASMatrix(arrayToMatrix(ijkToRAS))
    maps = scene.AddNode(maps)
    landmarksNode.SetNodeReferenceID(MAPS_REFERENCE, maps.GetID())
    return maps


def storeFineMaps(scene, detection, landmarksNode):
    """Keep the second stage's fine maps (a detection with a `combined` map) in a hidden volume (role
    CephLandmarksFineMaps) and their crops, inside masses, refined flags and points in the record;
    remove the node's earlier ones (also when the new detection has none).  Returns the volume or None."""
    old = landmarksNode.GetNodeReference(FINE_MAPS_REFERENCE)
    if old is not None:
        scene.RemoveNode(old)
    record = detectionRecord(landmarksNode)
    cm = getattr(detection, "combined", None)
    if cm is None:
        if record.pop(FINE_MAPS_KEY, None) is not None:
            setRecord(landmarksNode, record)
        landmarksNode.SetNodeReferenceID(FINE_MAPS_REFERENCE, None)
        return None
    record[FINE_MAPS_KEY] = {"crops": [c.to_array().tolist() for c in cm.crops],
                             "inside_mass": [float(m) for m in cm.inside_mass],
                             "refined": [bool(r) for r in cm.refined],
                             "points_px": np.asarray(cm.points_px, dtype=np.float64).tolist()}
    setRecord(landmarksNode, record)
    fine = _stacksVolume(scene, cm.fine, f"{landmarksNode.GetName()} fine landmark maps",
                         "second stage: per-landmark fine maps over each landmark's crop, slice k = landmark k + 1")
    fine = scene.AddNode(fine)
    landmarksNode.SetNodeReferenceID(FINE_MAPS_REFERENCE, fine.GetID())
    return fine


def landmarkMaps(landmarksNode):
    """The stored heatmaps (L, h, w) float32 (a view of the volume's data), or None if the node has none."""
    return _stack(landmarksNode.GetNodeReference(MAPS_REFERENCE) if landmarksNode else None)


def landmarkCombinedMap(landmarksNode, probs=None):
    """The second stage's combined map (detection/combined_map.CombinedMap) the node keeps, over its stored
    heatmaps `probs` (default: landmarkMaps), or None when it keeps none (a detection without --refine, or
    a scene saved before)."""
    from CephLandmarksLib.detection.combined_map import CombinedMap
    from CephLandmarksLib.imaging.crops import CropFrame

    record = detectionRecord(landmarksNode)
    kept = (record or {}).get(FINE_MAPS_KEY)
    fine = _stack(landmarksNode.GetNodeReference(FINE_MAPS_REFERENCE))
    probs = landmarkMaps(landmarksNode) if probs is None else probs
    frame = frameFromRecord(record) if record else None
    if not kept or fine is None or probs is None or frame is None or len(fine) != len(kept["crops"]):
        return None
    return CombinedMap(np.asarray(probs, dtype=np.float32), frame.model_to_image_matrix(),
                       np.asarray(record["spacing_mm"], dtype=np.float64), np.array(fine),
                       [CropFrame.from_array(a) for a in kept["crops"]], np.asarray(kept["inside_mass"], float),
                       np.asarray(kept["refined"], dtype=bool), np.asarray(kept["points_px"], dtype=np.float64))


def canRecomputeMeasurements(landmarksNode):
    """True if the node keeps what recomputing its measurements needs (heatmaps and model frame);
    scenes saved before this was kept do not."""
    record = detectionRecord(landmarksNode)
    maps = landmarkMaps(landmarksNode)
    return bool(record and record.get("model_frame") and maps is not None
                and len(maps) == len(record["landmarks"]))
