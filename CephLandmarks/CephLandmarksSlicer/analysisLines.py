"""The chosen analysis' lines (S-N, FH, N-A, the mandibular plane, the N-perpendicular, ...) as markups
line nodes in the slice views, recomputed from the landmarks node's current points.

The geometry is the library's (cephalometry/tracing.py, the same as the overlay PNG and the
report), in image pixels, placed in RAS with the detection's pixel-to-RAS matrix; colours are
the report's (outputs/tracing.LINE_RGB). The line nodes are locked (they follow the points, they
are not dragged themselves) and referenced from the landmarks node under one role, so a saved
scene keeps them and a refresh reuses them: called after every (debounced) edit, they follow
the dragged points.

MRML only: no qt, no slicer.app; it runs headless under slicer-core.
"""

import numpy as np

from CephLandmarksLib.cephalometry.tracing import tracing_lines
from CephLandmarksLib.outputs.tracing import line_rgb

from .record import detectionRecord
from .review import currentDetection

LINES_REFERENCE = "CephLandmarksAnalysisLines"
LINE_ATTRIBUTE = "CephLandmarks.Line"  # the tracing's line name on each line node


def linesRAS(node, analysisEntries):
    """[(Line, start RAS, end RAS)] of the analyses (entries or (key, horizontal) pairs) at the current points."""
    record = detectionRecord(node)
    detection, _, _ = currentDetection(node, withContours=False)
    m = np.asarray(record["pixel_to_ras"], dtype=np.float64)
    out = []
    for line in tracing_lines(detection.points_px, detection.spacing_mm, analysisEntries):
        ras = [(m @ np.array([p[0], p[1], 0.0, 1.0]))[:3] for p in (line.start_px, line.end_px)]
        out.append((line, ras[0], ras[1]))
    return out


def analysisLineNodes(node):
    """The line nodes the landmarks node references, by line name."""
    count = node.GetNumberOfNodeReferences(LINES_REFERENCE)
    nodes = [node.GetNthNodeReference(LINES_REFERENCE, i) for i in range(count)]
    return {n.GetAttribute(LINE_ATTRIBUTE): n for n in nodes if n is not None}


def _lineNode(scene, node, name):
    lineNode = scene.AddNewNodeByClass("vtkMRMLMarkupsLineNode", scene.GenerateUniqueName(f"{node.GetName()} {name}"))
    lineNode.SetAttribute(LINE_ATTRIBUTE, name)
    lineNode.CreateDefaultDisplayNodes()
    node.AddNodeReferenceID(LINES_REFERENCE, lineNode.GetID())
    return lineNode


def _place(lineNode, line, start, end, visible):
    wasModifying = lineNode.StartModify()
    lineNode.SetLocked(True)
    lineNode.RemoveAllControlPoints()
    lineNode.AddControlPoint(*start)
    lineNode.AddControlPoint(*end)
    lineNode.SetName(line.label)
    lineNode.SetNthControlPointLabel(0, "")
    lineNode.SetNthControlPointLabel(1, line.label)
    display = lineNode.GetDisplayNode()
    if display is not None:
        rgb = line_rgb(line.name)
        display.SetSelectedColor(*rgb)
        display.SetColor(*rgb)
        display.SetPropertiesLabelVisibility(False)
        display.SetPointLabelsVisibility(True)
        display.SetGlyphScale(0.5)
        display.SetVisibility(visible)
    lineNode.EndModify(wasModifying)


def updateAnalysisLines(scene, node, analysisEntries, visible=True):
    """Create, move or remove the landmarks node's line nodes to match `analysisEntries`; returns them by name."""
    existing = analysisLineNodes(node)
    wanted = linesRAS(node, analysisEntries)
    kept = {}
    for line, start, end in wanted:
        lineNode = existing.get(line.name) or _lineNode(scene, node, line.name)
        _place(lineNode, line, start, end, visible)
        kept[line.name] = lineNode
    removed = [lineNode for name, lineNode in existing.items() if name not in kept]
    if removed:
        node.RemoveNodeReferenceIDs(LINES_REFERENCE)
        for lineNode in kept.values():
            node.AddNodeReferenceID(LINES_REFERENCE, lineNode.GetID())
        for lineNode in removed:
            scene.RemoveNode(lineNode)
    return kept
