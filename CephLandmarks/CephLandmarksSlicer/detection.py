"""A detection in the scene: the nodes made for it (`showDetection`), their refresh after the
user's corrections (`refreshAfterEdits`), and which existing landmarks node a new detection of a
radiograph may go into (`nodeForRedetection`).  The module's Logic and Widget call these.

MRML only: every function takes its scene and nodes (no qt, no slicer.app); it runs headless
under slicer-core.
"""

from .contours import createContourModels
from .heatmap import HEATMAP_ATTRIBUTE, createHeatmapVolume
from .markups import createLandmarksNode, updatePointColors
from .measurements import createMeasurementsTable, updateMeasurementsTable
from .record import MEASUREMENTS_REFERENCE, VOLUME_REFERENCE, isLandmarksNode
from .tables import updateTable


def showDetection(scene, detection, volumeNode, node=None):
    """Landmarks node (new, or `node` overwritten), contour models, heatmap volume and tables; returns the node."""
    node = createLandmarksNode(scene, detection, volumeNode, node)
    createContourModels(scene, detection, volumeNode, node)
    heatmap = createHeatmapVolume(scene, detection, volumeNode, node)
    heatmap.SetAttribute(HEATMAP_ATTRIBUTE, "1")
    updateTable(scene, node)
    createMeasurementsTable(scene, detection, landmarksNode=node)
    return node


def refreshAfterEdits(scene, node):
    """(landmark table node, measurements table node) from the node's current (corrected) points.

    Point colours are reapplied from the stored flags (a Selected box may have been toggled).  A
    scene saved without the heatmaps keeps its detection-time measurements table."""
    updatePointColors(node)
    table = updateTable(scene, node)
    measurements = updateMeasurementsTable(scene, node)  # None: a scene saved without the maps
    return table, measurements or node.GetNodeReference(MEASUREMENTS_REFERENCE)


def nodeForRedetection(node, volumeNode):
    """`node` if it is a landmarks node detected on volumeNode (a new detection may overwrite it), else None."""
    if node and isLandmarksNode(node) and node.GetNodeReferenceID(VOLUME_REFERENCE) == volumeNode.GetID():
        return node
    return None


def isRadiographVolume(volume):
    """True for a volume the user may detect on: shown in selectors, not a heatmap, not a label map."""
    return (not volume.GetHideFromEditors() and not volume.GetAttribute(HEATMAP_ATTRIBUTE)
            and not volume.IsA("vtkMRMLLabelMapVolumeNode"))
