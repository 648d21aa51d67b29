"""MRML side of CephLandmarks: volume -> Radiograph, Detection -> markups, contours, heatmap, tables,
measurements that follow the clinician's corrections, exports and the report.

Imports only Slicer's MRML classes (``import slicer`` for the vtkMRML* names), vtk, numpy and
CephLandmarksLib, so it runs in Slicer and, headless, under the ``slicer-core`` wheel.  It never
touches ``slicer.app``, ``slicer.mrmlScene``, qt or ctk: every function takes its nodes or scene.

Per-point colour (markups have one colour per node): each point's *selection state* carries its
flag.  Confident points are "selected" and drawn in the display node's SelectedColor (green);
flagged points are "unselected" and drawn in its Color (red).  The selection state is stored per
point in .mrk.json and .mrb files and is unchanged by dragging; `updatePointColors` reapplies it
from the detection record kept on the node.

The detection record (model, spacing, model frame, per-landmark confidence, ERE, flag, reviewed,
original position) is a JSON node attribute, ``CephLandmarks.Detection``, saved with the scene.

Measurements follow the points.  `createLandmarksNode` also keeps the per-landmark calibrated
heatmaps, float32 (L, h, w) in model pixels (19 x 480 x 384: 14 MB in memory, about 12 MB as the
gzipped .nrrd in a .mrb: softmax tails compress poorly; kept exact so recomputed numbers equal the
detection-time ones), in a hidden scalar volume ("... landmark maps", HideFromEditors,
role CephLandmarksMaps; replaced when a detection is redone on the node) and the ModelFrame in the
record, so `updateMeasurementsTable` can recompute the measurements from the *current* points at
any time, also after a scene reload: a corrected point (moved, or placed after being missing) is
taken as exact, the others are drawn from their heatmaps as at detection (same seed, so an
unedited node gives the detection-time numbers), a deleted or unplaced point counts as missing.
Rows resting on corrected points are marked (CORRECTED_MARK, column "Corrected landmarks").
`cliJson`, `reviewedDetection` and `exportReport` use the same recomputed measurements.
"""

import csv
import json
import re

import numpy as np
import vtk
from vtk.util import numpy_support

import slicer

from CephLandmarksLib.detection.result import CONTOUR_LEVELS, Detection, LandmarkResult
from CephLandmarksLib.errors import CephError
from CephLandmarksLib.imaging.geometry import ModelFrame, ijk_to_ras, px_to_mm, ras_to_ijk
from CephLandmarksLib.imaging.images import DEFAULT_SPACING_MM, Radiograph, user_spacing
from CephLandmarksLib.cephalometry.measurement_uncertainty import (DEFAULT_SAMPLES, DEFAULT_SEED, UNCERTAIN_BELOW,
                                                      measure_corrected, results_json)
from CephLandmarksLib.cephalometry.measurements import MEASUREMENTS
from CephLandmarksLib.text import probability_text

DETECTION_ATTRIBUTE = "CephLandmarks.Detection"
VOLUME_REFERENCE = "CephLandmarksVolume"
TABLE_REFERENCE = "CephLandmarksTable"
CONTOUR_REFERENCE = "CephLandmarksContours"
HEATMAP_REFERENCE = "CephLandmarksHeatmap"
MEASUREMENTS_REFERENCE = "CephLandmarksMeasurements"
MAPS_REFERENCE = "CephLandmarksMaps"  # hidden volume: the per-landmark calibrated heatmaps (L slices)

CONFIDENT_COLOR = (0.2, 0.9, 0.3)
FLAGGED_COLOR = (1.0, 0.1, 0.1)
EDIT_TOLERANCE_MM = 1e-3
# Formats whose files carry no pixel spacing: Slicer shows them with 1 mm pixels.
_NO_SPACING_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".gif")


# --- volume -> Radiograph ----------------------------------------------------------------------


def _matrixToArray(vtkMatrix):
    return np.array([[vtkMatrix.GetElement(r, c) for c in range(4)] for r in range(4)])


def _arrayToMatrix(array):
    m = vtk.vtkMatrix4x4()
    for r in range(4):
        for c in range(4):
            m.SetElement(r, c, float(array[r][c]))
    return m


def _inPlaneAxes(dims):
    """(column axis, row axis, normal axis) of IJK for a single-slice volume of dimensions dims."""
    singleton = [a for a in (2, 0, 1) if dims[a] == 1]
    if not singleton:
        raise CephError(f"the volume has {dims[0]} x {dims[1]} x {dims[2]} voxels; "
                        "a radiograph must be a single 2D image (one slice)")
    normal = singleton[0]
    column, row = [a for a in (0, 1, 2) if a != normal]
    return column, row, normal


def pixelToRASMatrix(volumeNode):
    """4x4 matrix taking the image pixel (x = column, y = row, 0, 1) of a single-slice volume to RAS."""
    imageData = volumeNode.GetImageData() if volumeNode else None
    if imageData is None:
        raise CephError("the selected volume has no image data")
    column, row, normal = _inPlaneAxes(imageData.GetDimensions())
    permutation = np.zeros((4, 4))
    permutation[column, 0] = permutation[row, 1] = permutation[normal, 2] = permutation[3, 3] = 1.0
    ijkToRAS = vtk.vtkMatrix4x4()
    volumeNode.GetIJKToRASMatrix(ijkToRAS)
    return _matrixToArray(ijkToRAS) @ permutation


def volumeSpacing(volumeNode):
    """((sx, sy) in mm, source): the volume's in-plane spacing; 'assumed' 0.1 mm for PNG/JPEG-like files."""
    m = pixelToRASMatrix(volumeNode)
    spacing = (float(np.linalg.norm(m[:3, 0])), float(np.linalg.norm(m[:3, 1])))
    storage = volumeNode.GetStorageNode()
    fileName = (storage.GetFileName() or "") if storage else ""
    if fileName.lower().endswith(_NO_SPACING_SUFFIXES) and np.allclose(spacing, 1.0):
        return (DEFAULT_SPACING_MM, DEFAULT_SPACING_MM), "assumed"
    return spacing, "volume"


def radiographFromVolume(volumeNode, spacingMm=None):
    """The library's Radiograph for a single-slice scalar or RGB volume node.

    pixels[y, x] is the voxel at pixel (x, y) as `pixelToRASMatrix` maps it, i.e. the image as
    stored in its file (the same array `read_radiograph` gives).  spacingMm overrides the spacing.
    """
    if volumeNode is None or not volumeNode.IsA("vtkMRMLScalarVolumeNode") and not volumeNode.IsA(
            "vtkMRMLVectorVolumeNode"):
        raise CephError("select a scalar volume (a radiograph) as input")
    imageData = volumeNode.GetImageData()
    if imageData is None or imageData.GetPointData().GetScalars() is None:
        raise CephError(f"volume '{volumeNode.GetName()}' has no image data")
    dims = imageData.GetDimensions()
    column, row, normal = _inPlaneAxes(dims)
    scalars = numpy_support.vtk_to_numpy(imageData.GetPointData().GetScalars())
    components = imageData.GetNumberOfScalarComponents()
    array = scalars.reshape(dims[2], dims[1], dims[0], components).astype(np.float32)  # (k, j, i, c)
    array = array[..., :3].mean(axis=-1) if components > 1 else array[..., 0]
    pixels = np.squeeze(array, axis=2 - normal)  # drop the single-slice axis
    if (2 - column) < (2 - row):  # array axes are ordered (k, j, i); want (row, column)
        pixels = pixels.T
    if min(pixels.shape) < 16:
        raise CephError(f"volume '{volumeNode.GetName()}' is too small for a radiograph ({pixels.shape})")
    if not np.isfinite(pixels).all():
        raise CephError(f"volume '{volumeNode.GetName()}' contains NaN or infinite values")
    if spacingMm:
        spacing, source = user_spacing(spacingMm), "user"
    else:
        spacing, source = volumeSpacing(volumeNode)
    m = pixelToRASMatrix(volumeNode)
    rasToLps = np.diag([-1.0, -1.0, 1.0])
    axes = m[:3, :3] / np.maximum(np.linalg.norm(m[:3, :3], axis=0), 1e-12)
    storage = volumeNode.GetStorageNode()
    path = (storage.GetFileName() or "") if storage else ""
    return Radiograph(np.ascontiguousarray(pixels, dtype=np.float32), spacing, source, path or volumeNode.GetName(),
                      tuple(rasToLps @ m[:3, 3]), tuple((rasToLps @ axes).ravel()))


# --- markups node ------------------------------------------------------------------------------


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


def detectionRecord(node):
    """The JSON record kept on a landmarks node, or None for other nodes."""
    text = node.GetAttribute(DETECTION_ATTRIBUTE) if node else None
    return json.loads(text) if text else None


def _setRecord(node, record):
    node.SetAttribute(DETECTION_ATTRIBUTE, json.dumps(record))


def isLandmarksNode(node):
    return bool(node and node.IsA("vtkMRMLMarkupsFiducialNode") and node.GetAttribute(DETECTION_ATTRIBUTE))


def landmarksNodesForVolume(scene, volumeNode):
    nodes = []
    for i in range(scene.GetNumberOfNodesByClass("vtkMRMLMarkupsFiducialNode")):
        node = scene.GetNthNodeByClass(i, "vtkMRMLMarkupsFiducialNode")
        if isLandmarksNode(node) and node.GetNodeReferenceID(VOLUME_REFERENCE) == volumeNode.GetID():
            nodes.append(node)
    return nodes


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
    for lm, position in zip(detection.landmarks, ras):
        entry = lm.to_json_dict()
        missing = bool(getattr(lm, "missing", False)) or not np.isfinite(position).all()
        entry.update(reviewed=False, ras=None if missing else [float(v) for v in position])
        landmarks.append(entry)
        i = node.AddControlPoint(vtk.vtkVector3d(*(np.zeros(3) if missing else position)), lm.abbreviation)
        if missing:  # anatomy outside the image: a control point without a position, never a NaN
            node.SetNthControlPointPositionMissing(i)
        node.SetNthControlPointDescription(i, _describe(entry))
    record = detection.to_json_dict()
    record.update(landmarks=landmarks, pixel_to_ras=m.tolist(), model_frame=_frameRecord(detection.frame))
    _setRecord(node, record)
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
    _setRecord(node, record)


# --- what recomputing the measurements needs: heatmaps and model frame ---------------------------


def _frameRecord(frame):
    return {"image_size": list(frame.image_size), "model_size": list(frame.model_size),
            "scaled_size": list(frame.scaled_size), "offset": list(frame.offset), "mirror_x": bool(frame.mirror_x)}


def _frameFromRecord(record):
    f = record.get("model_frame")
    if not f:
        return None
    return ModelFrame(tuple(int(v) for v in f["image_size"]), tuple(int(v) for v in f["model_size"]),
                      tuple(int(v) for v in f["scaled_size"]), tuple(int(v) for v in f["offset"]),
                      bool(f["mirror_x"]))


def _modelToPixelMatrix(frame):
    """4x4: model pixel (u, v, k, 1) -> image pixel (x, y, k, 1), mirroring of left-facing images included."""
    m = frame.model_to_image_matrix()
    return np.array([[m[0, 0], m[0, 1], 0, m[0, 2]], [m[1, 0], m[1, 1], 0, m[1, 2]], [0, 0, 1, 0], [0, 0, 0, 1.0]])


def storeLandmarkMaps(scene, detection, landmarksNode):
    """Keep the detection's calibrated heatmaps (L, h, w) as float32 in a hidden scalar volume of L slices
    (HideFromEditors, so no node selector lists it), referenced by the landmarks node (role
    CephLandmarksMaps) and saved with the scene; replaces the node's earlier one.  Also records the
    model frame.  Returns the volume node."""
    record = detectionRecord(landmarksNode)
    record["model_frame"] = _frameRecord(detection.frame)
    _setRecord(landmarksNode, record)
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
    ijkToRAS = np.asarray(record["pixel_to_ras"]) @ _modelToPixelMatrix(detection.frame)
    column, row = (ijkToRAS[:3, a] / max(np.linalg.norm(ijkToRAS[:3, a]), 1e-12) for a in (0, 1))
    ijkToRAS[:3, 2] = np.cross(column, row) * max(np.linalg.norm(ijkToRAS[:3, 2]), 1e-3)
    maps.SetIJKToRASMatrix(_arrayToMatrix(ijkToRAS))
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


def _contoursFromModels(landmarksNode, pixelToRAS):
    """{landmark index: {"50": [(K, 2) image px], "90": [...]}} read back from the contour ribbons."""
    contours = {}
    for level, model in zip(CONTOUR_LEVELS, contourModels(landmarksNode)):  # createContourModels' order
        poly = model.GetPolyData() if model is not None else None
        ids = poly.GetCellData().GetArray("Landmark") if poly is not None else None
        if ids is None or poly.GetNumberOfCells() == 0:
            continue
        xy = ras_to_ijk(numpy_support.vtk_to_numpy(poly.GetPoints().GetData()), pixelToRAS)[:, :2]
        chain, chainLandmark = [], None
        for c in range(poly.GetNumberOfCells()):  # quads (k, k+1, ...) of one polyline are consecutive
            cell = poly.GetCell(c)
            a, b, landmark = cell.GetPointId(0), cell.GetPointId(1), int(ids.GetValue(c))
            if chain and landmark == chainLandmark and chain[-1] == a:
                chain.append(b)
                continue
            if chain:
                contours.setdefault(chainLandmark, {}).setdefault(level, []).append(xy[chain])
            chain, chainLandmark = [a, b], landmark
        if chain:
            contours.setdefault(chainLandmark, {}).setdefault(level, []).append(xy[chain])
    return contours


def _reviewState(landmarksNode):
    """(rows, points in mm (L, 2) with NaN where absent, 0-based indices of corrected points)."""
    record = detectionRecord(landmarksNode)
    rows = landmarkRows(landmarksNode)
    pointsPx = np.array([[row["x_px"], row["y_px"]] if row.get("present") else [np.nan, np.nan] for row in rows],
                        dtype=np.float64)
    corrected = [i for i, row in enumerate(rows) if row.get("present") and row["edited"]]
    return rows, px_to_mm(pointsPx, record["spacing_mm"]), corrected


def _reviewed(landmarksNode, withContours=True):
    """(Detection at the current points, without measurements; points in mm; corrected indices)."""
    record = detectionRecord(landmarksNode)
    if record is None:
        raise CephError("the node holds no CephLandmarks detection")
    rows, pointsMm, corrected = _reviewState(landmarksNode)
    m = np.asarray(record["pixel_to_ras"])
    contours = _contoursFromModels(landmarksNode, m) if withContours else {}
    nan = float("nan")
    landmarks = []
    for i, row in enumerate(rows):
        present = bool(row.get("present"))
        x, y = (float(row["x_px"]), float(row["y_px"])) if present else (nan, nan)
        p = row.get("p_large_error")
        landmarks.append(LandmarkResult(
            int(row["index"]), row["name"], row["abbreviation"], x, y, float(pointsMm[i, 0]), float(pointsMm[i, 1]),
            float(row["confidence"]), nan if row.get("ere_mm") is None else float(row["ere_mm"]),
            bool(row["flagged"]), {} if i in corrected or not present else contours.get(int(row["index"]), {}),
            not present, nan if p is None else float(p)))
    rasToLps = np.diag([-1.0, -1.0, 1.0])
    axes = m[:3, :3] / np.maximum(np.linalg.norm(m[:3, :3], axis=0), 1e-12)
    probs = landmarkMaps(landmarksNode) if canRecomputeMeasurements(landmarksNode) else None
    detection = Detection(
        record["image"], tuple(record["image_size_px"]), tuple(record["spacing_mm"]), record["spacing_source"],
        dict(record["model"]), float(record["ere_threshold_mm"]), landmarks, probs, _frameFromRecord(record),
        tuple(rasToLps @ m[:3, 3]), tuple((rasToLps @ axes).ravel()),
        {"corrected_landmarks": [rows[i]["abbreviation"] for i in corrected]},
        **{k: record[k] for k in ("framing", "orientation", "alignment", "large_error_mm", "regions", "flag_rule")
           if k in record})
    return detection, pointsMm, corrected


def measureLandmarks(landmarksNode, n=DEFAULT_SAMPLES, seed=DEFAULT_SEED):
    """The measurements at the node's current points (list of the library's dicts, each with
    "corrected"), or None if the node keeps no heatmaps.  Corrected points are exact, deleted or
    unplaced points missing, the others drawn from the stored heatmaps (measure_corrected)."""
    detection, pointsMm, corrected = _reviewed(landmarksNode, withContours=False)
    if detection.probs is None:
        return None
    return measure_corrected(detection, pointsMm, corrected, n, seed)


def reviewedDetection(landmarksNode, n=DEFAULT_SAMPLES, seed=DEFAULT_SEED, measurements=True):
    """A CephLandmarksLib Detection with the node's current (corrected) points, for exports and the report.

    A deleted or unplaced point is `missing`; confidence, ERE, P(large error) and flag are the
    detection's.  Contours (read back from the contour models) are kept for uncorrected points
    only.  probs are the stored heatmaps (None for a scene saved without them).  extra holds
    "corrected_landmarks" (abbreviations) and, when `measurements` is true and heatmaps are
    stored, "measurements" recomputed at the current points (so to_json_dict never falls back to
    the detection's points).
    """
    detection, pointsMm, corrected = _reviewed(landmarksNode)
    if measurements and detection.probs is not None:
        results = measure_corrected(detection, pointsMm, corrected, n, seed)
        detection.extra["measurements"] = results_json(results, n, seed, detection.extra["corrected_landmarks"])
    return detection


# --- contours and heatmap ----------------------------------------------------------------------


def _ribbons(polylines, m):
    """Polylines in image pixels -> a thin ribbon across the slice plane (so slice views cut it back
    into the polyline) as (points, quads)."""
    normal = m[:3, 2] / max(np.linalg.norm(m[:3, 2]), 1e-12)
    half = 0.5 * max(np.linalg.norm(m[:3, 2]), 0.2)
    points, quads = [], []
    for line in polylines:
        line = np.asarray(line, dtype=np.float64)
        if len(line) < 2:
            continue
        ras = ijk_to_ras(line, m)
        start = sum(len(p) for p in points)
        points.append(np.concatenate([ras - half * normal, ras + half * normal]))
        n = len(ras)
        quads += [(start + k, start + k + 1, start + n + k + 1, start + n + k) for k in range(n - 1)]
    return (np.concatenate(points) if points else np.zeros((0, 3))), quads


def contourPolyData(detection, pixelToRAS, level):
    """vtkPolyData of the `level` ("50"/"90") credible regions of all landmarks in RAS, with RGB
    point colours "Color" (red flagged, green confident) and cell data "Landmark" (1-based index)."""
    allPoints, allQuads, colors, landmarkIds = [], [], [], []
    offset = 0
    for lm in detection.landmarks:
        points, quads = _ribbons(lm.contours_px.get(level, []), pixelToRAS)
        allPoints.append(points)
        allQuads += [tuple(q + offset for q in quad) for quad in quads]
        landmarkIds += [lm.index] * len(quads)
        colors.append(np.tile(np.round(np.array(FLAGGED_COLOR if lm.flagged else CONFIDENT_COLOR) * 255),
                              (len(points), 1)))
        offset += len(points)
    polyData = vtk.vtkPolyData()
    vtkPoints = vtk.vtkPoints()
    vtkPoints.SetData(numpy_support.numpy_to_vtk(np.concatenate(allPoints) if allPoints else np.zeros((0, 3)),
                                                 deep=True))
    polyData.SetPoints(vtkPoints)
    cells = vtk.vtkCellArray()
    for quad in allQuads:
        cells.InsertNextCell(4, quad)
    polyData.SetPolys(cells)
    colorArray = numpy_support.numpy_to_vtk(
        np.concatenate(colors).astype(np.uint8) if colors else np.zeros((0, 3), np.uint8), deep=True,
        array_type=vtk.VTK_UNSIGNED_CHAR)
    colorArray.SetName("Color")
    polyData.GetPointData().SetScalars(colorArray)
    ids = numpy_support.numpy_to_vtk(np.asarray(landmarkIds, dtype=np.int32), deep=True, array_type=vtk.VTK_INT)
    ids.SetName("Landmark")
    polyData.GetCellData().AddArray(ids)
    return polyData


def createContourModels(scene, detection, volumeNode, landmarksNode):
    """Model nodes "... 50% regions" and "... 90% regions", shown in slice views, referenced by
    the landmarks node (role CephLandmarksContours); replaces earlier ones of that node."""
    m = pixelToRASMatrix(volumeNode)
    for old in [landmarksNode.GetNthNodeReference(CONTOUR_REFERENCE, i)
                for i in range(landmarksNode.GetNumberOfNodeReferences(CONTOUR_REFERENCE))]:
        if old is not None:
            scene.RemoveNode(old)
    landmarksNode.RemoveNodeReferenceIDs(CONTOUR_REFERENCE)
    models = []
    for level, opacity in zip(CONTOUR_LEVELS, (1.0, 0.6)):
        model = scene.AddNewNodeByClass("vtkMRMLModelNode", f"{landmarksNode.GetName()} {level}% regions")
        model.SetAndObservePolyData(contourPolyData(detection, m, level))
        model.CreateDefaultDisplayNodes()
        model.SetAndObserveTransformNodeID(volumeNode.GetTransformNodeID())
        display = model.GetDisplayNode()
        display.SetVisibility2D(True)
        display.SetSliceIntersectionThickness(3 if level == "50" else 1)
        display.SetSliceIntersectionOpacity(opacity)
        display.SetOpacity(opacity)
        display.SetActiveScalarName("Color")
        display.SetScalarVisibility(True)
        display.SetScalarRangeFlag(slicer.vtkMRMLDisplayNode.UseDirectMapping)
        landmarksNode.AddNodeReferenceID(CONTOUR_REFERENCE, model.GetID())
        models.append(model)
    return models


def contourModels(landmarksNode):
    return [landmarksNode.GetNthNodeReference(CONTOUR_REFERENCE, i)
            for i in range(landmarksNode.GetNumberOfNodeReferences(CONTOUR_REFERENCE))]


def setContoursVisible(landmarksNode, visible):
    for model in contourModels(landmarksNode):
        if model is not None and model.GetDisplayNode():
            model.GetDisplayNode().SetVisibility(bool(visible))


def createHeatmapVolume(scene, detection, volumeNode, landmarksNode, colorNodeID="vtkMRMLColorTableNodeIron"):
    """A scalar volume of all heatmaps (each scaled to its maximum, then the maximum over landmarks),
    on the model's pixel grid placed exactly over the radiograph (no resampling)."""
    probs = np.asarray(detection.probs, dtype=np.float32)
    peaks = probs.max(axis=(1, 2), keepdims=True)
    combined = (probs / np.maximum(peaks, 1e-12)).max(axis=0)  # (h, w)
    modelToPixel = _modelToPixelMatrix(detection.frame)  # mirroring of left-facing images included
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
    heatmap.SetIJKToRASMatrix(_arrayToMatrix(pixelToRASMatrix(volumeNode) @ modelToPixel))
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


# --- table -------------------------------------------------------------------------------------

TABLE_COLUMNS = (("Index", "int"), ("Landmark", "string"), ("Abbreviation", "string"), ("X (mm)", "double"),
                 ("Y (mm)", "double"), ("Confidence", "double"), ("ERE (mm)", "double"),
                 ("P(large error) (%)", "double"), ("Flagged", "string"), ("Reviewed", "string"), ("Edited", "string"))


def sortedRows(node):
    """Landmark rows, flagged first, each group by decreasing probability of a large error (then ERE)."""
    return sorted(landmarkRows(node), key=lambda r: (not r["flagged"], -(r.get("p_large_error") or 0.0), -r["ere_mm"]))


_COLUMN_ARRAYS = {"int": vtk.vtkIntArray, "bit": vtk.vtkBitArray, "string": vtk.vtkStringArray,
                  "double": vtk.vtkDoubleArray}


def _resetTable(tableNode, columns):
    """Empty the node's table and give it typed columns [(name, kind)]; returns (table, arrays)."""
    table = tableNode.GetTable()
    table.Initialize()
    arrays = []
    for name, kind in columns:
        array = _COLUMN_ARRAYS[kind]()
        array.SetName(name)
        table.AddColumn(array)
        arrays.append(array)
    return table, arrays


def updateTable(scene, landmarksNode, tableNode=None):
    """Fill (and create if needed) the landmarks node's table node; returns it."""
    if tableNode is None:
        tableNode = landmarksNode.GetNodeReference(TABLE_REFERENCE)
    if tableNode is None:
        tableNode = scene.AddNewNodeByClass("vtkMRMLTableNode", f"{landmarksNode.GetName()} table")
        landmarksNode.SetNodeReferenceID(TABLE_REFERENCE, tableNode.GetID())
    wasModifying = tableNode.StartModify()
    table, arrays = _resetTable(tableNode, TABLE_COLUMNS)
    yesNo = {True: "yes", False: "no"}
    for row in sortedRows(landmarksNode):
        p = row.get("p_large_error")  # None in records made by a model without the score
        values = (row["index"], row["name"], row["abbreviation"], row["x_mm"], row["y_mm"], row["confidence"],
                  row["ere_mm"], None if p is None else 100 * p, yesNo[bool(row["flagged"])],
                  yesNo[bool(row["reviewed"])], yesNo[bool(row["edited"])])
        for array, value in zip(arrays, values):
            array.InsertNextValue(float("nan") if value is None else value)  # missing landmark: no position
    table.Modified()
    tableNode.SetUseColumnTitleAsColumnHeader(True)
    tableNode.SetLocked(True)
    tableNode.EndModify(wasModifying)
    return tableNode


def tableRowLandmarkIndex(tableNode, row):
    return int(tableNode.GetTable().GetValueByName(row, "Index").ToInt())


# --- measurements table ------------------------------------------------------------------------

# Table nodes have no per-row colour: an uncertain row (most probable class below
# UNCERTAIN_BELOW) is put first, its name starts with UNCERTAIN_MARK and its "Uncertain" column is 1.
# A row resting on corrected points ends with CORRECTED_MARK and names them in "Corrected landmarks".
MEASUREMENT_COLUMNS = (("Measurement", "string"), ("Unit", "string"), ("Value", "double"), ("Median", "double"),
                       ("5 %", "double"), ("95 %", "double"), ("Class", "string"), ("Class probability", "double"),
                       ("Uncertain", "bit"), ("Corrected landmarks", "string"), ("Definition", "string"))
UNCERTAIN_MARK = "\u26a0 "
CORRECTED_MARK = " \u270e"
SKIPPED_TEXT = "skipped: landmark missing"


def measurementResultRows(results):
    """Rows (tuples in MEASUREMENT_COLUMNS order) of measurement reports (measure_corrected's dicts):
    uncertain first, then the others, then the skipped ones (a landmark they use is missing or was
    deleted), each group in the library's order."""
    from CephLandmarksLib.outputs.report import measurement_rows  # the report module: imported on use

    rows = []
    for r, strings in zip(results, measurement_rows(results)):
        uncertain = bool(r.get("uncertain"))
        corrected = r.get("corrected") or []
        rows.append(((UNCERTAIN_MARK if uncertain else "") + strings[0] + (CORRECTED_MARK if corrected else ""),
                     strings[1], r["value"], r["median"], r["p05"], r["p95"], r.get("class_label", ""),
                     r.get("class_probability", float("nan")), int(uncertain), ", ".join(corrected), r["definition"]))
    rows.sort(key=lambda row: not row[8])  # stable: uncertain first
    done = {r["key"] for r in results}
    nan = float("nan")
    for m in MEASUREMENTS:
        if m.key not in done:
            rows.append((f"{m.key}: {m.name}" if m.key not in m.name else m.name,
                         {"deg": "\u00b0"}.get(m.unit, m.unit), nan, nan, nan, nan, SKIPPED_TEXT, nan, 0, "",
                         m.definition))
    return rows


def measurementTableRows(detection, n=DEFAULT_SAMPLES, seed=DEFAULT_SEED):
    """Rows of a Detection's measurements at its own points (nothing corrected)."""
    return measurementResultRows(measure_corrected(detection, n=n, seed=seed))


def _measurementsTableNode(scene, landmarksNode, tableNode, name):
    if tableNode is None and landmarksNode is not None:
        tableNode = landmarksNode.GetNodeReference(MEASUREMENTS_REFERENCE)
    if tableNode is None:
        baseName = name or (f"{landmarksNode.GetName()} measurements" if landmarksNode else "measurements")
        tableNode = scene.AddNewNodeByClass("vtkMRMLTableNode", name or scene.GenerateUniqueName(baseName))
    elif name:
        tableNode.SetName(name)
    if landmarksNode is not None:
        landmarksNode.SetNodeReferenceID(MEASUREMENTS_REFERENCE, tableNode.GetID())
    return tableNode


def _fillMeasurementsTable(tableNode, results):
    rows = measurementResultRows(results)
    wasModifying = tableNode.StartModify()
    tableNode.SetLocked(False)
    table, arrays = _resetTable(tableNode, MEASUREMENT_COLUMNS)
    for row in rows:
        for array, value in zip(arrays, row):
            array.InsertNextValue(value)
    table.Modified()
    tableNode.SetUseColumnTitleAsColumnHeader(True)
    tableNode.SetColumnDescription("Value", "the measurement at the current points (corrected ones as placed)")
    tableNode.SetColumnDescription("5 %", "5th percentile of the measurement over draws from the heatmaps")
    tableNode.SetColumnDescription("95 %", "95th percentile of the measurement over draws from the heatmaps")
    tableNode.SetColumnDescription("Uncertain", f"1: the most probable class has probability below {UNCERTAIN_BELOW:g} "
                                                "(row first, name marked \u26a0)")
    tableNode.SetColumnDescription("Corrected landmarks", "corrected points this measurement uses (name marked "
                                   "\u270e): taken as exact, only the other points are drawn from their heatmaps")
    tableNode.SetLocked(True)
    tableNode.EndModify(wasModifying)
    return tableNode


def updateMeasurementsTable(scene, landmarksNode, tableNode=None, name=None, n=DEFAULT_SAMPLES, seed=DEFAULT_SEED):
    """Recompute the landmarks node's measurements table from its *current* points; returns the table node.

    Corrected points (moved, or placed after being missing) are exact; the others are drawn from the
    heatmaps stored with the node (same seed as at detection: an unedited node gives the detection-time
    table); a deleted or unplaced point counts as missing (its measurements are skipped).  Rows resting
    on corrected points are marked.  Fills `tableNode`, or the one the node references (role
    CephLandmarksMeasurements), creating it if needed.  Fast enough to run (debounced) on every edit.
    Returns None, leaving any table unchanged, for a node saved without heatmaps (an older scene:
    see canRecomputeMeasurements).
    """
    results = measureLandmarks(landmarksNode, n, seed)
    if results is None:
        return None
    return _fillMeasurementsTable(_measurementsTableNode(scene, landmarksNode, tableNode, name), results)


def createMeasurementsTable(scene, detection, name=None, tableNode=None, landmarksNode=None,
                            n=DEFAULT_SAMPLES, seed=DEFAULT_SEED):
    """Fill a vtkMRMLTableNode with measurements (value, median, 90 % interval, most probable class and
    its probability, uncertain flag, corrected landmarks, definition); returns it.

    With `landmarksNode` (the usual call, at detection): the same as `updateMeasurementsTable`, from the
    node's current points and stored heatmaps (stored from `detection` first if the node has none);
    the node references the table, so it is kept with the scene.  Without it: the detection's own
    points, nothing corrected.
    """
    if landmarksNode is None:
        return _fillMeasurementsTable(_measurementsTableNode(scene, None, tableNode, name),
                                      measure_corrected(detection, n=n, seed=seed))
    if not canRecomputeMeasurements(landmarksNode):
        storeLandmarkMaps(scene, detection, landmarksNode)
    return updateMeasurementsTable(scene, landmarksNode, tableNode, name, n, seed)


# --- export ------------------------------------------------------------------------------------


def exportMarkupsJson(landmarksNode, path):
    storage = slicer.vtkMRMLMarkupsJsonStorageNode()
    if landmarksNode.GetScene() is not None:
        landmarksNode.GetScene().AddNode(storage)
    storage.SetFileName(str(path))
    ok = storage.WriteData(landmarksNode)
    if landmarksNode.GetScene() is not None:
        landmarksNode.GetScene().RemoveNode(storage)
    if not ok:
        raise CephError(f"could not write {path}")


CSV_FIELDS = ("index", "name", "abbreviation", "x_px", "y_px", "x_mm", "y_mm", "confidence", "ere_mm",
              "p_large_error", "flagged", "reviewed", "edited")


def exportCsv(landmarksNode, path):
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(CSV_FIELDS + ("R", "A", "S"))
        for row in landmarkRows(landmarksNode):
            ras = row["ras"] if row.get("present", True) else ["", "", ""]
            writer.writerow([row.get(k, "") for k in CSV_FIELDS] + list(ras))


STALE_MEASUREMENTS_NOTE = ("computed at detection from the detected points: this scene keeps no heatmaps, "
                           "so they do not follow the corrected points")


def cliJson(landmarksNode, n=DEFAULT_SAMPLES, seed=DEFAULT_SEED):
    """The CLI's JSON (`ceph-landmarks detect`), with the current (possibly corrected) positions,
    per landmark "reviewed" and "edited", and "measurements" recomputed at the current points
    (updateMeasurementsTable's rule): "corrected_landmarks" lists the corrected points and each
    item's "corrected" those it rests on.  A scene saved without heatmaps keeps the detection-time
    measurements, with a "note" saying so when points were corrected."""
    record = detectionRecord(landmarksNode)
    out = {k: v for k, v in record.items() if k not in ("landmarks", "pixel_to_ras", "model_frame")}
    keys = ("index", "name", "abbreviation", "x_px", "y_px", "x_mm", "y_mm", "confidence", "ere_mm", "p_large_error",
            "flagged", "reviewed", "edited")
    rows = landmarkRows(landmarksNode)
    out["landmarks"] = [{k: row[k] for k in keys if k in row} for row in rows if row.get("present", True)]
    results = measureLandmarks(landmarksNode, n, seed)
    if results is not None:
        corrected = [row["abbreviation"] for row in rows if row.get("present") and row["edited"]]
        out["measurements"] = results_json(results, n, seed, corrected)
    elif "measurements" in out and any(row["edited"] for row in rows):
        out["measurements"] = dict(out["measurements"], note=STALE_MEASUREMENTS_NOTE)
    return out


def exportCliJson(landmarksNode, path):
    with open(path, "w", encoding="utf-8") as f:
        json.dump(cliJson(landmarksNode), f, indent=2)


def exportReport(landmarksNode, volumeNode=None, outDir=".", stem=None, n=DEFAULT_SAMPLES, seed=DEFAULT_SEED):
    """The library's one-page report (NAME_report.pdf and NAME_report.png in outDir) at the current
    (corrected) points, with the recomputed measurements; corrected points are marked.  volumeNode:
    the radiograph (default: the one the node references).  Needs matplotlib, not torch.  Returns
    the two paths."""
    from CephLandmarksLib.outputs.report import write_report  # needs matplotlib: imported on use

    volumeNode = volumeNode or landmarksNode.GetNodeReference(VOLUME_REFERENCE)
    if volumeNode is None:
        raise CephError("the landmarks' radiograph is not in the scene")
    detection, pointsMm, corrected = _reviewed(landmarksNode)
    if detection.probs is None:
        raise CephError("this scene keeps no heatmaps, so the measurements cannot be recomputed: detect again")
    pixels = radiographFromVolume(volumeNode).pixels
    if pixels.shape != (detection.image_size[1], detection.image_size[0]):
        raise CephError(f"volume '{volumeNode.GetName()}' is not the image the landmarks were detected on")
    results = measure_corrected(detection, pointsMm, corrected, n, seed)
    stem = stem or re.sub(r"[^\w.-]+", "_", volumeNode.GetName()).strip("._") or "radiograph"
    return write_report(pixels, detection, results, outDir, stem, corrected=detection.extra["corrected_landmarks"])
