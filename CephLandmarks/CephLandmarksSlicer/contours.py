"""The 50 % and 90 % credible regions of each landmark's heatmap as two model nodes drawn in the
slice views (thin ribbons across the slice plane, red for flagged points and green for confident
ones), and the same regions read back from those models (`contoursFromModels`, for the report).
What is drawn follows CephLandmarksLib.uncertainty.regions, as in the overlay and the report: a
"90 %" region that is not localised is not drawn; its point gets a dashed ring in the 90 % model
(cells of landmark id -index, which `contoursFromModels` leaves out), marked "?" as the overlay and
the report mark it: a markups point list (`createRingLabels`) with one point labelled "?" on the
ring's upper left (where the overlay writes it), drawn without a glyph, locked and not selectable,
its description the reason ("90 % region not localised: 179 cm²").  A model node has no text in
slice views; a markups point's label is what Slicer draws as text there.

MRML only: no qt, no slicer.app; it runs headless under slicer-core.
"""

import numpy as np
import slicer
import vtk
from vtk.util import numpy_support

from CephLandmarksLib.detection.result import CONTOUR_LEVELS
from CephLandmarksLib.imaging.geometry import ijk_to_ras, ras_to_ijk
from CephLandmarksLib.uncertainty.regions import RING_LEVEL, localised, not_localised_text

from .markups import CONFIDENT_COLOR, FLAGGED_COLOR
from .record import CONTOUR_REFERENCE, RING_LABELS_REFERENCE
from .volumes import pixelToRASMatrix


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


RING_MM = 5.0  # radius of the dashed ring around a point whose region is not localised
RING_DASHES = 12


RING_LABEL = "?"  # the overlay's and the report's mark of a region not localised


def _ringsOf(detection):
    """The landmarks whose "90 %" region is not localised (drawn as a dashed ring), with the ring's radius in px."""
    radiusPx = [RING_MM / float(s) for s in detection.spacing_mm[:2]]
    return [(lm, radiusPx) for lm in detection.landmarks
            if not lm.missing and not localised(lm.region_90_area_mm2)]


def _dashedRing(x, y, radiusPx):
    """Polylines (image px) of a dashed circle around (x, y)."""
    t = np.linspace(0, 2 * np.pi, 2 * RING_DASHES + 1)
    dashes = [np.linspace(a, b, 5) for a, b in zip(t[:-1:2], t[1::2], strict=True)]
    return [np.column_stack([x + radiusPx[0] * np.cos(d), y + radiusPx[1] * np.sin(d)]) for d in dashes]


def contourPolyData(detection, pixelToRAS, level):
    """vtkPolyData of the `level` ("50"/"90") credible regions of all landmarks in RAS, with RGB
    point colours "Color" (red flagged, green confident) and cell data "Landmark" (1-based index;
    -index for the dashed ring of a point whose region is not localised)."""
    allPoints, allQuads, colors, landmarkIds = [], [], [], []
    offset = 0
    rings = {lm.index: radiusPx for lm, radiusPx in _ringsOf(detection)} if level == RING_LEVEL else {}
    for lm in detection.landmarks:
        lines, landmarkId = lm.contours_px.get(level, []), lm.index
        if lm.index in rings:
            lines, landmarkId = _dashedRing(lm.x_px, lm.y_px, rings[lm.index]), -lm.index
        points, quads = _ribbons(lines, pixelToRAS)
        allPoints.append(points)
        allQuads += [tuple(q + offset for q in quad) for quad in quads]
        landmarkIds += [landmarkId] * len(quads)
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
    the landmarks node (role CephLandmarksContours), and the rings' "?" (createRingLabels); replaces
    earlier ones of that node.  Returns the two models."""
    m = pixelToRASMatrix(volumeNode)
    for role in (CONTOUR_REFERENCE, RING_LABELS_REFERENCE):
        for old in [landmarksNode.GetNthNodeReference(role, i)
                    for i in range(landmarksNode.GetNumberOfNodeReferences(role))]:
            if old is not None:
                scene.RemoveNode(old)
        landmarksNode.RemoveNodeReferenceIDs(role)
    models = []
    for level, opacity in zip(CONTOUR_LEVELS, (1.0, 0.6), strict=True):
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
    createRingLabels(scene, detection, volumeNode, landmarksNode, m)
    return models


def createRingLabels(scene, detection, volumeNode, landmarksNode, pixelToRAS=None):
    """A markups point list "<landmarks> regions not localised" (role CephLandmarksRegionLabels) with a
    point labelled "?" on the upper left of each dashed ring (as the overlay), coloured as its landmark
    (selected: green, unselected: red, as in markups.py), its description the reason; no glyph, only
    the label; locked, not selectable, a fixed number of points, hidden from node selectors.  None
    when every region is localised."""
    rings = _ringsOf(detection)
    if not rings:
        return None
    m = pixelToRASMatrix(volumeNode) if pixelToRAS is None else pixelToRAS
    node = scene.AddNewNodeByClass("vtkMRMLMarkupsFiducialNode", f"{landmarksNode.GetName()} regions not localised")
    node.CreateDefaultDisplayNodes()
    wasModifying = node.StartModify()
    node.SetHideFromEditors(True)
    node.SetAndObserveTransformNodeID(volumeNode.GetTransformNodeID())
    diagonal = np.sqrt(0.5)
    for lm, radiusPx in rings:
        x, y = lm.x_px - diagonal * radiusPx[0], lm.y_px - diagonal * radiusPx[1]  # image rows grow downwards
        i = node.AddControlPoint(vtk.vtkVector3d(*ijk_to_ras([[x, y]], m)[0]), RING_LABEL)
        node.SetNthControlPointDescription(i, f"{lm.abbreviation}: {not_localised_text(lm.region_90_area_mm2)}")
        node.SetNthControlPointSelected(i, not lm.flagged)
        node.SetNthControlPointLocked(i, True)
    node.SetLocked(True)
    node.SetSelectable(False)
    node.SetFixedNumberOfControlPoints(True)
    display = node.GetDisplayNode()
    display.SetSelectedColor(*CONFIDENT_COLOR)
    display.SetColor(*FLAGGED_COLOR)
    display.SetGlyphType(display.GetGlyphTypeFromString("Vertex2D"))  # a single pixel: the "?" alone shows
    display.SetPointLabelsVisibility(True)
    display.SetPropertiesLabelVisibility(False)
    display.SetTextScale(4.0)
    landmarksNode.AddNodeReferenceID(RING_LABELS_REFERENCE, node.GetID())
    node.EndModify(wasModifying)
    return node


def ringLabels(landmarksNode):
    """The "?" point list of the landmarks node (createRingLabels), or None."""
    return landmarksNode.GetNodeReference(RING_LABELS_REFERENCE)


def contourModels(landmarksNode):
    return [landmarksNode.GetNthNodeReference(CONTOUR_REFERENCE, i)
            for i in range(landmarksNode.GetNumberOfNodeReferences(CONTOUR_REFERENCE))]


def setContoursVisible(landmarksNode, visible):
    """The region contours, their rings and the rings' "?" shown or hidden together."""
    for node in [*contourModels(landmarksNode), ringLabels(landmarksNode)]:
        if node is not None and node.GetDisplayNode():
            node.GetDisplayNode().SetVisibility(bool(visible))


def contoursFromModels(landmarksNode, pixelToRAS):
    """{landmark index: {"50": [(K, 2) image px], "90": [...]}} read back from the contour ribbons."""
    contours = {}
    # createContourModels' order; the user may have deleted one of them
    for level, model in zip(CONTOUR_LEVELS, contourModels(landmarksNode), strict=False):
        poly = model.GetPolyData() if model is not None else None
        ids = poly.GetCellData().GetArray("Landmark") if poly is not None else None
        if ids is None or poly.GetNumberOfCells() == 0:
            continue
        xy = ras_to_ijk(numpy_support.vtk_to_numpy(poly.GetPoints().GetData()), pixelToRAS)[:, :2]
        chain, chainLandmark = [], None
        for c in range(poly.GetNumberOfCells()):  # quads (k, k+1, ...) of one polyline are consecutive
            cell = poly.GetCell(c)
            a, b, landmark = cell.GetPointId(0), cell.GetPointId(1), int(ids.GetValue(c))
            if landmark < 0:  # a dashed ring, not a region
                continue
            if chain and landmark == chainLandmark and chain[-1] == a:
                chain.append(b)
                continue
            if chain:
                contours.setdefault(chainLandmark, {}).setdefault(level, []).append(xy[chain])
            chain, chainLandmark = [a, b], landmark
        if chain:
            contours.setdefault(chainLandmark, {}).setdefault(level, []).append(xy[chain])
    return contours
