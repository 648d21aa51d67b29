"""The landmarks node: a markups fiducial node with one control point per landmark, placed in the
radiograph's RAS space, and its rows at the *current* (possibly corrected) positions.

Per-point colour (markups have one colour per node): each point's *selection state* carries its
flag.  Confident points are "selected" and drawn in the display node's SelectedColor (green);
flagged points are "unselected" and drawn in its Color (red).  The selection state is stored per
point in .mrk.json and .mrb files and is unchanged by dragging; `updatePointColors` reapplies it
from the detection record (record.py).  A point counts as edited once it is moved (more than
EDIT_TOLERANCE_MM), placed after being missing, unplaced or deleted.

MRML only: no qt, no slicer.app; it runs headless under slicer-core.
"""

import numpy as np
import vtk

from CephLandmarksLib.imaging.geometry import ijk_to_ras, ras_to_ijk
from CephLandmarksLib.text import probability_text

from .maps import storeLandmarkMaps
from .record import VOLUME_REFERENCE, detectionRecord, frameRecord, setRecord
from .volumes import pixelToRASMatrix

CONFIDENT_COLOR = (0.2, 0.9, 0.3)
FLAGGED_COLOR = (1.0, 0.1, 0.1)
EDIT_TOLERANCE_MM = 1e-3


def _describe(record):
    text = f"{record['name']}; confidence {record['confidence']:.2f}; ERE {record['ere_mm']:.2f} mm"
    if record.get("p_large_error") is not None:
        text += f"; P(large error) {probability_text(record['p_large_error'])}"
    if record["flagged"]:  # with its reasons, so a flag on a low P(large error) is not a riddle
        reasons = ", ".join(r.replace("_", " ") for r in record.get("flag_reasons") or [])
        text += f"; FLAGGED ({reasons})" if reasons else "; FLAGGED"
    if record.get("reviewed"):
        text += "; reviewed"
    return text


def createLandmarksNode(scene, detection, volumeNode, node=None, name=None):
    """Put a Detection on a markups fiducial node (a new one, or `node`, replacing its points).

    Points are placed in the volume's RAS space; the node observes the volume's parent transform.
    The record keeps the model frame, and the hidden maps volume (`storeLandmarkMaps`, replacing the
    node's earlier one) the heatmaps, so the measurements can be recomputed after corrections.
    """
    m = pixelToRASMatrix(volumeNode)
    if node is None:
        node = scene.AddNewNodeByClass("vtkMRMLMarkupsFiducialNode",
                                       name or scene.GenerateUniqueName(f"{volumeNode.GetName()} landmarks"))
    if node.GetDisplayNode() is None:
        node.CreateDefaultDisplayNodes()
    wasModifying = node.StartModify()
    node.RemoveAllControlPoints()
    node.SetAndObserveTransformNodeID(volumeNode.GetTransformNodeID())
    node.SetNodeReferenceID(VOLUME_REFERENCE, volumeNode.GetID())
    ras = ijk_to_ras([[lm.x_px, lm.y_px] for lm in detection.landmarks], m)
    landmarks = []
    for lm, position in zip(detection.landmarks, ras, strict=True):
        entry = lm.to_json_dict()
        missing = bool(getattr(lm, "missing", False)) or not np.isfinite(position).all()
        entry.update(reviewed=False, ras=None if missing else [float(v) for v in position])
        landmarks.append(entry)
        i = node.AddControlPoint(vtk.vtkVector3d(*(np.zeros(3) if missing else position)), lm.abbreviation)
        if missing:  # anatomy outside the image: a control point without a position, never a NaN
            node.SetNthControlPointPositionMissing(i)
        node.SetNthControlPointDescription(i, _describe(entry))
    record = detection.to_json_dict()
    record.update(landmarks=landmarks, pixel_to_ras=m.tolist(), model_frame=frameRecord(detection.frame))
    setRecord(node, record)
    storeLandmarkMaps(scene, detection, node)
    display = node.GetDisplayNode()
    display.SetSelectedColor(*CONFIDENT_COLOR)
    display.SetColor(*FLAGGED_COLOR)
    display.SetPointLabelsVisibility(True)
    updatePointColors(node)
    node.EndModify(wasModifying)
    return node


def controlPointIndex(node, landmarkIndex):
    """Index of the control point of landmark `landmarkIndex` (1-based), or -1 if the user deleted it."""
    record = detectionRecord(node)
    entry = next(e for e in record["landmarks"] if e["index"] == landmarkIndex)
    i = record["landmarks"].index(entry)
    if i < node.GetNumberOfControlPoints() and node.GetNthControlPointLabel(i) == entry["abbreviation"]:
        return i
    for j in range(node.GetNumberOfControlPoints()):
        if node.GetNthControlPointLabel(j) == entry["abbreviation"]:
            return j
    return -1


def updatePointColors(node):
    """Flagged points unselected (red, display Color), confident ones selected (green, SelectedColor)."""
    for entry in detectionRecord(node)["landmarks"]:
        i = controlPointIndex(node, entry["index"])
        if i >= 0:
            node.SetNthControlPointSelected(i, not entry["flagged"])


def landmarkRows(node):
    """One dict per landmark with its current position (after any correction by the user)."""
    record = detectionRecord(node)
    m = np.asarray(record["pixel_to_ras"])
    spacing = record["spacing_mm"]
    rows = []
    for entry in record["landmarks"]:
        row = dict(entry)
        i = controlPointIndex(node, entry["index"])
        if i < 0:
            row.update(present=False, edited=True)
            rows.append(row)
            continue
        if node.GetNthControlPointPositionStatus(i) != node.PositionDefined:
            row.update(present=False, edited=entry["ras"] is not None)  # unplaced now: edited if it had a position
            rows.append(row)
            continue
        position = np.array(node.GetNthControlPointPosition(i))
        x, y = ras_to_ijk(position, m)[0, :2]
        row.update(present=True, ras=position.tolist(), x_px=float(x), y_px=float(y),
                   x_mm=float(x * spacing[0]), y_mm=float(y * spacing[1]),
                   edited=entry["ras"] is None
                   or bool(np.linalg.norm(position - np.asarray(entry["ras"])) > EDIT_TOLERANCE_MM))
        rows.append(row)
    return rows


def isEdited(node):
    """True if the user moved or deleted any detected point (or added one)."""
    if node.GetNumberOfControlPoints() != len(detectionRecord(node)["landmarks"]):
        return True
    return any(row["edited"] for row in landmarkRows(node))


def setReviewed(node, landmarkIndex, reviewed=True):
    record = detectionRecord(node)
    for entry in record["landmarks"]:
        if entry["index"] == landmarkIndex:
            entry["reviewed"] = bool(reviewed)
            i = controlPointIndex(node, landmarkIndex)
            if i >= 0:
                node.SetNthControlPointDescription(i, _describe(entry))
    setRecord(node, record)
