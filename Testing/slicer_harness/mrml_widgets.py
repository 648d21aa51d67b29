"""Slicer's compiled Qt classes that Python sees as ``slicer.q*``: MRML widgets and the scripted-module
objects (installed as attributes of the ``slicer`` module by the environment).

qMRMLNodeComboBox filters the real scene the way qMRMLSortFilterProxyModel does: a node is listed when its
class is one of ``nodeTypes`` or, with ``showChildNodeTypes`` (default true), it IsA() one of them; minus
``hideChildNodeTypes`` and nodes hidden from editors (unless ``showHidden``). ``setCurrentNode`` with a node
that is not listed leaves no current node. It is disabled until it has a scene, selects the first node
added to an empty list when ``noneEnabled`` is false (QComboBox's rule), and moves to the neighbouring node
when the current one leaves the list. parameterNodeWrapper compares ``type(widget)`` against these classes.
"""

from .core import QObject, QtProperty, Signal, emit, readonly, stored
from .ctk import ctkDoubleSpinBox, ctkRangeWidget, ctkSliderWidget
from .inputs import QTableView
from .widgets import QWidget


class _SceneHolder:
    mrmlSceneChanged = Signal("mrmlSceneChanged(vtkMRMLScene*)")

    def setMRMLScene(self, scene):
        if scene is getattr(self, "_scene", None):
            return
        self._scene = scene
        emit(self, "mrmlSceneChanged(vtkMRMLScene*)", scene)

    def mrmlScene(self):
        return getattr(self, "_scene", None)


class qMRMLWidget(_SceneHolder, QWidget):
    pass


class qSlicerWidget(_SceneHolder, QWidget):
    pass


class qMRMLNodeComboBox(QWidget):
    currentNodeChanged = Signal("currentNodeChanged(vtkMRMLNode*)", "currentNodeChanged(bool)")
    currentNodeIDChanged = Signal("currentNodeIDChanged(QString)")
    nodeActivated = Signal("nodeActivated(vtkMRMLNode*)")
    nodeAdded = Signal("nodeAdded(vtkMRMLNode*)")
    nodeAddedByUser = Signal("nodeAddedByUser(vtkMRMLNode*)")
    nodeAboutToBeRemoved = Signal("nodeAboutToBeRemoved(vtkMRMLNode*)")
    nodeAboutToBeEdited = Signal("nodeAboutToBeEdited(vtkMRMLNode*)")
    currentNodeRenamed = Signal("currentNodeRenamed(QString)")

    def _refreshing(self, old, new):
        self._refresh()

    nodeTypes = stored("nodeTypes", [], list, _refreshing)
    showChildNodeTypes = stored("showChildNodeTypes", True, bool, _refreshing)
    hideChildNodeTypes = stored("hideChildNodeTypes", [], list, _refreshing)
    showHidden = stored("showHidden", False, bool, _refreshing)
    noneEnabled = stored("noneEnabled", False, bool, _refreshing)
    addEnabled = stored("addEnabled", True, bool)
    removeEnabled = stored("removeEnabled", True, bool)
    editEnabled = stored("editEnabled", False, bool)
    renameEnabled = stored("renameEnabled", False, bool)
    selectNodeUponCreation = stored("selectNodeUponCreation", True, bool)
    baseName = stored("baseName", "", str)
    noneDisplay = stored("noneDisplay", "None", str)
    interactionNodeSingletonTag = stored("interactionNodeSingletonTag", "", str)

    def __init__(self, parent=None):
        super().__init__(parent)
        self._scene, self._observations, self._current, self._listed = None, [], None, []
        self.enabled = False  # enabled once it has a scene

    def setMRMLScene(self, scene):
        if scene is self._scene:
            return
        for tag in self._observations:
            self._scene.RemoveObserver(tag)
        self._scene, self._observations, self._listed = scene, [], []
        if scene is not None:
            self._observations = [scene.AddObserver(event, lambda caller, event: self._refresh())
                                  for event in (scene.NodeAddedEvent, scene.NodeRemovedEvent)]
        self._refresh()
        self.enabled = scene is not None

    def mrmlScene(self):
        return self._scene

    def nodes(self):
        """The nodes the combo box lists, in scene order."""
        scene, types = self._scene, self.nodeTypes
        if scene is None:
            return []
        listed = []
        for i in range(scene.GetNumberOfNodes()):
            node = scene.GetNthNode(i)
            if not (node.GetClassName() in types or (self.showChildNodeTypes and any(node.IsA(t) for t in types))):
                continue
            if any(node.IsA(t) for t in self.hideChildNodeTypes):
                continue
            if node.GetHideFromEditors() and not self.showHidden:
                continue
            listed.append(node)
        return listed

    def _refresh(self):
        before, nodes = self._listed, self.nodes()
        self._listed = [n.GetID() for n in nodes]
        current = self._current
        if current is not None and current.GetID() not in self._listed:
            index = before.index(current.GetID()) if current.GetID() in before else 0
            self._set(nodes[min(index, len(nodes) - 1)] if nodes else None)
        elif current is None and nodes and not before and not self.noneEnabled:
            self._set(nodes[0])  # QComboBox makes the first row of an empty list current

    def _set(self, node):
        if (node.GetID() if node else None) == (self._current.GetID() if self._current else None):
            return
        self._current = node
        emit(self, "currentNodeChanged(vtkMRMLNode*)", node)
        emit(self, "currentNodeChanged(bool)", node is not None)
        emit(self, "currentNodeIDChanged(QString)", node.GetID() if node else "")

    def currentNode(self):
        return self._current

    def setCurrentNode(self, node):
        self._set(node if node is not None and node.GetID() in self._listed else None)

    def setCurrentNodeID(self, nodeID):
        self.setCurrentNode(self._scene.GetNodeByID(nodeID) if self._scene is not None and nodeID else None)

    currentNodeID = QtProperty(lambda self: self._current.GetID() if self._current else "", setCurrentNodeID)

    def setCurrentNodeIndex(self, index):
        nodes = self.nodes()
        self._set(nodes[index] if 0 <= index < len(nodes) else None)

    def nodeCount(self):
        return len(self._listed)

    def nodeFromIndex(self, index):
        nodes = self.nodes()
        return nodes[index] if 0 <= index < len(nodes) else None

    def addNode(self, nodeType=None):
        nodeType = nodeType or (self.nodeTypes[0] if self.nodeTypes else None)
        if nodeType not in self.nodeTypes:
            return None
        node = self._scene.AddNewNodeByClass(nodeType, self.baseName or self._scene.GetTagByClassName(nodeType))
        if self.selectNodeUponCreation:
            self.setCurrentNode(node)
        emit(self, "nodeAddedByUser(vtkMRMLNode*)", node)
        return node

    def removeCurrentNode(self):
        if self._current is not None:
            self._scene.RemoveNode(self._current)


class qMRMLTableView(QTableView):
    def __init__(self, parent=None):
        super().__init__(parent)
        self._scene, self._table = None, None

    def setMRMLScene(self, scene):
        self._scene = scene

    def mrmlScene(self):
        return self._scene

    def setMRMLTableNode(self, node):
        if node is not self._table:
            self._table = node
            self._selection.clear()

    def mrmlTableNode(self):
        return self._table

    def _column_count(self):
        return self._table.GetNumberOfColumns() if self._table is not None else 0


class qMRMLSliderWidget(_SceneHolder, ctkSliderWidget):
    quantity = stored("quantity", "", str)


class qMRMLSpinBox(_SceneHolder, ctkDoubleSpinBox):
    quantity = stored("quantity", "", str)


class qMRMLRangeWidget(_SceneHolder, ctkRangeWidget):
    quantity = stored("quantity", "", str)


class qSlicerScriptedLoadableModuleWidget(qSlicerWidget):
    """The module panel: the parent a <Name>Widget gets; ``self()`` is the Python widget object."""

    isEntered = readonly(lambda self: self._entered)

    def __init__(self, parent=None):
        super().__init__(parent)
        self._entered, self._python = False, None

    def self(self):
        return self._python


class qSlicerScriptedLoadableModule(QObject):
    """The module object (``slicer.modules.<name>``) a <Name>(ScriptedLoadableModule) gets as parent."""

    title = stored("title", "", str)
    categories = stored("categories", [], list)
    contributors = stored("contributors", [], list)
    dependencies = stored("dependencies", [], list)
    helpText = stored("helpText", "", str)
    acknowledgementText = stored("acknowledgementText", "", str)
    icon = stored("icon")
    hidden = stored("hidden", False, bool)
    index = stored("index", -1, int)
    path = readonly(lambda self: self._path)

    def __init__(self, name, path):
        super().__init__()
        self.objectName, self._path, self._widget = name, str(path), None

    def widgetRepresentation(self):
        return self._widget

    def isHidden(self):
        return self.hidden
