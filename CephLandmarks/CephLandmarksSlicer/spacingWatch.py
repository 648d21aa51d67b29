"""A radiograph's spacing source recorded as the volume is loaded, whether or not the CephLandmarks
panel is ever opened.

A PNG/JPEG-like radiograph shows in Slicer with a 1 mm placeholder spacing.  Saving the scene as .mrb
rewrites it as NRRD, after which only the volume's mark (volumes.SPACING_SOURCE_ATTRIBUTE, saved in the
scene) says that the spacing was assumed.  The panel marks a volume when it loads one, is shown one or
detects on one (detectSection.py); a JPEG dropped into Slicer and saved as .mrb before the panel was ever
opened kept no mark, and came back with a real-looking 1 mm.  So the module, which Slicer instantiates at
start-up for every installed module, watches the scene (`watchScene`): each scalar volume added is
marked (`volumes.recordSpacingSource`) as soon as its storage node names its file.

When that is: Slicer 5.x reads a volume into a private scene, adds the volume to the main scene
(NodeAddedEvent) and then attaches its storage node, which already names the file (a ModifiedEvent of
the volume; vtkSlicerVolumesLogic::AddArchetypeVolume).  So the check runs when the node is added and on
its ModifiedEvents until a file name is there; then its observer is removed.  A volume without a file
(made by a module) keeps a cheap observer until it gets one or is removed.

MRML only (vtk; no qt, no slicer.app): it runs headless under slicer-core.
"""

import vtk

from .volumes import recordSpacingSource

_ATTRIBUTE = "_cephLandmarksSpacingWatch"  # on the scene's Python wrapper (VTK keeps it with the object)


class SpacingSourceWatch:
    """Observers on one scene; see the module docstring."""

    def __init__(self, scene):
        self._volumeTags = {}  # volume node ID -> its ModifiedEvent observer tag
        self.sceneTags = [scene.AddObserver(scene.NodeAddedEvent, self.onNodeAdded),
                          scene.AddObserver(scene.NodeRemovedEvent, self.onNodeRemoved)]

    @staticmethod
    def _marked(volume) -> bool:
        """Mark the volume if its file is known (True: nothing more to wait for)."""
        storage = volume.GetStorageNode()
        if storage is None or not storage.GetFileName():
            return False
        recordSpacingSource(volume)
        return True

    @vtk.calldata_type(vtk.VTK_OBJECT)
    def onNodeAdded(self, caller, event, node):
        if (node is None or not node.IsA("vtkMRMLScalarVolumeNode") or node.IsA("vtkMRMLLabelMapVolumeNode")
                or self._marked(node)):
            return
        self._volumeTags[node.GetID()] = node.AddObserver(vtk.vtkCommand.ModifiedEvent, self.onVolumeModified)

    def onVolumeModified(self, volume, event):
        if self._marked(volume):
            tag = self._volumeTags.pop(volume.GetID(), None)
            if tag is not None:
                volume.RemoveObserver(tag)

    @vtk.calldata_type(vtk.VTK_OBJECT)
    def onNodeRemoved(self, caller, event, node):
        tag = self._volumeTags.pop(node.GetID(), None) if node is not None else None
        if tag is not None:
            node.RemoveObserver(tag)

    @property
    def waiting(self) -> int:
        """How many volumes are still waiting for their file name."""
        return len(self._volumeTags)


def watchScene(scene):
    """Start watching `scene` (once: a second call returns the same watch); None for no scene."""
    if scene is None:
        return None
    watch = getattr(scene, _ATTRIBUTE, None)
    if watch is None:
        watch = SpacingSourceWatch(scene)
        setattr(scene, _ATTRIBUTE, watch)
    return watch
