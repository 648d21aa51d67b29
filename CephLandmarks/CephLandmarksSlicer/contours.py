"""The 50 % and 90 % credible regions of each landmark's heatmap as two model nodes drawn in the
slice views (thin ribbons across the slice plane, red for flagged points and green for confident
ones), and the same regions read back from those models (`contoursFromModels`, for the report).
What is drawn follows CephLandmarksLib.uncertainty.regions, as in the overlay and the report: a
"90 %" region that is not localised is not drawn; its point gets a dashed ring in the 90 % model
(cells of landmark id -index, which `contoursFromModels` leaves out).

MRML only: no qt, no slicer.app; it runs headless under slicer-core.
"""

import numpy as np
import slicer
import vtk
from vtk.util import numpy_support

from CephLandmarksLib.detection.result import CONTOUR_LEVELS
from CephLandmarksLib.imaging.geometry import ijk_to_ras, ras_to_ijk
from CephLandmarksLib.uncertainty.regions import RING_LEVEL, localised

from .markups import CONFIDENT_COLOR, FLAGGED_COLOR
from .record import CONTOUR_REFERENCE
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
    for lm in detection.landmarks:
        lines, landmarkId = lm.contours_px.get(level, []), lm.index
        if level == RING_LEVEL and not lm.missing and not localised(lm.region_90_area_mm2):
            radiusPx = [RING_MM / float(s) for s in detection.spacing_mm[:2]]
            lines, landmarkId = _dashedRing(lm.x_px, lm.y_px, radiusPx), -lm.index
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
    the landmarks node (role CephLandmarksContours); replaces earlier ones of that node."""
    m = pixelToRASMatrix(volumeNode)
    for old in [landmarksNode.GetNthNodeReference(CONTOUR_REFERENCE, i)
                for i in range(landmarksNode.GetNumberOfNodeReferences(CONTOUR_REFERENCE))]:
        if old is not None:
            scene.RemoveNode(old)
    landmarksNode.RemoveNodeReferenceIDs(CONTOUR_REFERENCE)
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
    return models


def contourModels(landmarksNode):
    return [landmarksNode.GetNthNodeReference(CONTOUR_REFERENCE, i)
            for i in range(landmarksNode.GetNumberOfNodeReferences(CONTOUR_REFERENCE))]


def setContoursVisible(landmarksNode, visible):
    for model in contourModels(landmarksNode):
        if model is not None and model.GetDisplayNode():
            model.GetDisplayNode().SetVisibility(bool(visible))


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
