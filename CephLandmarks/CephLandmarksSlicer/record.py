"""What a landmarks node carries and saves with the scene.

The detection record (model, spacing, pixel-to-RAS matrix, model frame, and per landmark its
confidence, ERE, probability of a large error, flag, reviewed state and detected position) is a
JSON node attribute, ``CephLandmarks.Detection``.  The nodes made for the detection (radiograph,
table, contours, heatmap, measurements, landmark maps) are node references under the roles below,
so that they are found again, and kept together, in a saved scene.

MRML only: no qt, no slicer.app; it runs headless under slicer-core.
"""

import json

from CephLandmarksLib.imaging.geometry import ModelFrame

DETECTION_ATTRIBUTE = "CephLandmarks.Detection"
VOLUME_REFERENCE = "CephLandmarksVolume"
TABLE_REFERENCE = "CephLandmarksTable"
CONTOUR_REFERENCE = "CephLandmarksContours"
RING_LABELS_REFERENCE = "CephLandmarksRegionLabels"  # markups: the "?" beside each not-localised region's ring
HEATMAP_REFERENCE = "CephLandmarksHeatmap"
MEASUREMENTS_REFERENCE = "CephLandmarksMeasurements"
MAPS_REFERENCE = "CephLandmarksMaps"  # hidden volume: the per-landmark calibrated heatmaps (L slices)


def detectionRecord(node):
    """The JSON record kept on a landmarks node, or None for other nodes."""
    text = node.GetAttribute(DETECTION_ATTRIBUTE) if node else None
    return json.loads(text) if text else None


def setRecord(node, record):
    """Store the record on the node (saved with the scene)."""
    node.SetAttribute(DETECTION_ATTRIBUTE, json.dumps(record))


def isLandmarksNode(node):
    """True for a markups fiducial node made by detection (it carries a record)."""
    return bool(node and node.IsA("vtkMRMLMarkupsFiducialNode") and node.GetAttribute(DETECTION_ATTRIBUTE))


def landmarksNodesForVolume(scene, volumeNode):
    """The landmarks nodes of the scene detected on volumeNode."""
    nodes = []
    for i in range(scene.GetNumberOfNodesByClass("vtkMRMLMarkupsFiducialNode")):
        node = scene.GetNthNodeByClass(i, "vtkMRMLMarkupsFiducialNode")
        if isLandmarksNode(node) and node.GetNodeReferenceID(VOLUME_REFERENCE) == volumeNode.GetID():
            nodes.append(node)
    return nodes


def frameRecord(frame):
    """The ModelFrame (model pixels <-> image pixels) as the record keeps it."""
    return {"image_size": list(frame.image_size), "model_size": list(frame.model_size),
            "scaled_size": list(frame.scaled_size), "offset": list(frame.offset), "mirror_x": bool(frame.mirror_x)}


def frameFromRecord(record):
    """The record's ModelFrame, or None in a record made before it was kept."""
    f = record.get("model_frame")
    if not f:
        return None
    return ModelFrame(tuple(int(v) for v in f["image_size"]), tuple(int(v) for v in f["model_size"]),
                      tuple(int(v) for v in f["scaled_size"]), tuple(int(v) for v in f["offset"]),
                      bool(f["mirror_x"]))
