"""CephLandmarks: the 19 cephalometric landmarks on a lateral skull radiograph, with how far to trust each.

This file is the wiring only (Slicer's scripted-module template: parameter node, connectGui,
tryWithErrorDisplay; Module / Widget / Logic / Test).  The work lives beside it:
CephLandmarksSlicer/ (MRML nodes, the background process, the dependency list) and
CephLandmarksLib/ (the library and `ceph-landmarks` CLI that every detection runs).
Loading the module and setup() import no on-demand dependency (torch, matplotlib, ...): only light
library modules over numpy and SimpleITK, which Slicer bundles.
It must stay importable by the Python 3.9 of Slicer 5.8 and older, which it then tells to upgrade.
"""

import logging
import os
import pathlib
import sys
import time
from typing import Annotated

import qt
import vtk

import slicer
from slicer import vtkMRMLMarkupsFiducialNode, vtkMRMLScalarVolumeNode
from slicer.i18n import tr as _
from slicer.i18n import translate
from slicer.parameterNodeWrapper import Choice, WithinRange, parameterNodeWrapper
from slicer.ScriptedLoadableModule import (
    ScriptedLoadableModule,
    ScriptedLoadableModuleLogic,
    ScriptedLoadableModuleTest,
    ScriptedLoadableModuleWidget,
)
from slicer.util import VTKObservationMixin

MINIMUM_PYTHON = (3, 10)  # Slicer 5.10 and later (Python 3.12); the library does not import on 3.9
MINIMUM_SLICER = "5.10"
EDIT_DEBOUNCE_MS = 300  # tables and measurements are recomputed once after a burst of point edits
CLINIC_FOLDER_SETTING = "CephLandmarks/ClinicFolder"  # the last clinic dataset folder, across sessions


def libraryFolder() -> str:
    """The folder holding CephLandmarksLib: this module's folder once installed, the repository
    root in a source checkout (CephLandmarks/ added to Slicer's module paths)."""
    here = os.path.dirname(os.path.abspath(__file__))
    for folder in (here, os.path.dirname(here)):
        if os.path.isdir(os.path.join(folder, "CephLandmarksLib")):
            return folder
    return here


def _usable() -> bool:
    return sys.version_info >= MINIMUM_PYTHON


if _usable():
    if libraryFolder() not in sys.path:
        sys.path.append(libraryFolder())
    # The pixel spacing box stops where the library's plausibility check does, and says what the library
    # assumes without a spacing (numpy and SimpleITK: bundled).
    from CephLandmarksLib.imaging.images import DEFAULT_SPACING_MM, MAX_SPACING_MM
else:
    MAX_SPACING_MM = float("inf")  # the library does not load here; setup() only asks for a newer Slicer
    DEFAULT_SPACING_MM = None


def mrml():
    from CephLandmarksSlicer import mrml as module

    return module


def clinic():
    from CephLandmarksSlicer import clinic as module

    return module


def chosenPath(path):
    """A path parameter the user has set, or None: an unset pathlib.Path parameter reads as Path('.')."""
    text = str(path) if path is not None else ""
    return None if text in ("", ".") else text


#
# CephLandmarks
#


class CephLandmarks(ScriptedLoadableModule):
    def __init__(self, parent):
        ScriptedLoadableModule.__init__(self, parent)
        self.parent.title = _("Ceph Landmarks")
        self.parent.categories = [translate("qSlicerAbstractCoreModule", "Quantification")]
        self.parent.dependencies = ["Markups"]
        self.parent.contributors = ["CephLandmarks developers"]
        self.parent.helpText = _(
            "Detects the 19 ISBI-2015 cephalometric landmarks on a lateral skull radiograph and shows how "
            "certain each one is: red points are flagged (expected radial error above the model's threshold, or for a model "
            "adapted to your clinic a probability of an error over 4 mm above its flag level; also points outside "
            "the image, implausibly placed or at its edge), green points are confident. The table gives each point's probability of an error over 4 mm. "
            "Contours are the 50 % and 90 % credible regions of each heatmap. Measurements follow your "
            "corrections. Needs 3D Slicer {v} or later.").format(v=MINIMUM_SLICER)
        self.parent.acknowledgementText = _(
            "Landmarks and data conventions of the ISBI 2015 Grand Challenge in cephalometric X-ray analysis.")


#
# CephLandmarksParameterNode
#


@parameterNodeWrapper
class CephLandmarksParameterNode:
    inputVolume: vtkMRMLScalarVolumeNode
    landmarks: vtkMRMLMarkupsFiducialNode
    spacingMm: Annotated[float, WithinRange(0.0, MAX_SPACING_MM)] = 0.0  # 0: the image's own spacing
    device: Annotated[str, Choice(["cpu", "cuda", "mps"])] = "cpu"
    showContours: bool = True
    showHeatmap: bool = False
    datasetFolder: pathlib.Path
    trainModelPath: pathlib.Path
    evaluateFolder: pathlib.Path
    clinicFolder: pathlib.Path  # Add to clinic dataset writes here, Adapt reads it
    epochs: Annotated[int, WithinRange(1, 10000)] = 40
    inputSize: str = "320x416"
    trainDevice: Annotated[str, Choice(["auto", "cpu", "cuda", "mps"])] = "auto"
    evaluateSplit: Annotated[str, Choice(["test1", "test2", "train"])] = "test1"


#
# CephLandmarksWidget
#


class CephLandmarksWidget(ScriptedLoadableModuleWidget, VTKObservationMixin):
    def __init__(self, parent=None) -> None:
        ScriptedLoadableModuleWidget.__init__(self, parent)
        VTKObservationMixin.__init__(self)
        self.logic = None
        self.ui = None
        self._parameterNode = None
        self._parameterNodeGuiTag = None
        self._observedLandmarks = None
        self._detection = None  # the running DetectionJob
        self._training = None  # (command, BackgroundProcess, start time, model file it writes or None)
        self._trainingLines = []  # the running command's output, for its failure message
        self._editTimer = qt.QTimer()
        self._editTimer.setSingleShot(True)
        self._editTimer.setInterval(EDIT_DEBOUNCE_MS)
        self._editTimer.connect("timeout()", self.refreshTables)

    def setup(self) -> None:
        ScriptedLoadableModuleWidget.setup(self)
        if not _usable():
            label = qt.QLabel(_("CephLandmarks needs 3D Slicer {v} or later (Python {p}+); this Slicer runs "
                                "Python {r}. Please install a newer Slicer.").format(
                v=MINIMUM_SLICER, p=".".join(map(str, MINIMUM_PYTHON)), r=".".join(map(str, sys.version_info[:3]))))
            label.wordWrap = True
            self.layout.addWidget(label)
            return
        uiWidget = slicer.util.loadUI(self.resourcePath("UI/CephLandmarks.ui"))
        self.layout.addWidget(uiWidget)
        self.ui = slicer.util.childWidgetVariables(uiWidget)
        uiWidget.setMRMLScene(slicer.mrmlScene)
        self.ui.spacingSpinBox.toolTip = _("Millimetres per pixel; 'from image' uses the volume's spacing "
                                           "({mm:g} mm assumed for PNG/JPEG)").format(mm=DEFAULT_SPACING_MM)
        self.logic = CephLandmarksLogic()

        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.StartCloseEvent, self.onSceneStartClose)
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.EndCloseEvent, self.onSceneEndClose)

        self.ui.loadRadiographButton.connect("clicked(bool)", self.onLoadRadiograph)
        self.ui.importModelButton.connect("clicked(bool)", self.onImportModel)
        self.ui.detectButton.connect("clicked(bool)", self.onDetectButton)
        self.ui.landmarksTable.connect("clicked(QModelIndex)", self.onTableClicked)
        self.ui.markReviewedButton.connect("clicked(bool)", self.onMarkReviewed)
        self.ui.showContoursCheckBox.connect("toggled(bool)", self.updateOverlays)
        self.ui.showHeatmapCheckBox.connect("toggled(bool)", self.updateOverlays)
        self.ui.exportMarkupsButton.connect("clicked(bool)", lambda: self.onExport("mrk.json"))
        self.ui.exportCsvButton.connect("clicked(bool)", lambda: self.onExport("csv"))
        self.ui.exportJsonButton.connect("clicked(bool)", lambda: self.onExport("json"))
        self.ui.exportReportButton.connect("clicked(bool)", self.onExportReport)
        self.ui.addToClinicButton.connect("clicked(bool)", self.onAddToClinic)
        self.ui.adaptClinicPathLineEdit.connect("currentPathChanged(QString)", self.onAdaptClinicPathChanged)
        self.ui.adaptButton.connect("clicked(bool)", lambda: self.onTrainingCommand("adapt"))
        self.ui.trainButton.connect("clicked(bool)", lambda: self.onTrainingCommand("train"))
        self.ui.calibrateButton.connect("clicked(bool)", lambda: self.onTrainingCommand("calibrate"))
        self.ui.evaluateButton.connect("clicked(bool)", lambda: self.onTrainingCommand("evaluate"))
        self.ui.plotListWidget.connect("currentTextChanged(QString)", self.onPlotSelected)
        self.ui.savePlotsButton.connect("clicked(bool)", self.onSavePlots)

        self.updateModelList()
        self.initializeParameterNode()

    def cleanup(self) -> None:
        self.removeObservers()
        self._editTimer.stop()
        if self._detection is not None:
            self._detection.cancel()
        if self._training is not None:
            self._training[1].kill()

    def enter(self) -> None:
        if self.ui is not None:
            self.initializeParameterNode()

    def exit(self) -> None:
        if self._parameterNode:
            self._parameterNode.disconnectGui(self._parameterNodeGuiTag)
            self._parameterNodeGuiTag = None
            self.removeObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self.updateGUIFromParameterNode)

    def onSceneStartClose(self, caller, event) -> None:
        if self._detection is not None:  # its nodes would land in the next scene
            self._detection.cancel()
        self.observeLandmarks(None)
        self.setParameterNode(None)

    def onSceneEndClose(self, caller, event) -> None:
        if self.parent.isEntered:
            self.initializeParameterNode()

    def initializeParameterNode(self) -> None:
        self.setParameterNode(self.logic.getParameterNode())
        if not self._parameterNode.inputVolume:  # the first radiograph: not a heatmap or a hidden node of ours
            volumes = slicer.util.getNodesByClass("vtkMRMLScalarVolumeNode")
            radiographs = [v for v in volumes if not v.GetHideFromEditors() and not v.GetAttribute("CephLandmarks.Heatmap")
                           and not v.IsA("vtkMRMLLabelMapVolumeNode")]
            if radiographs:
                self._parameterNode.inputVolume = radiographs[0]
        if not chosenPath(self._parameterNode.clinicFolder):  # the folder used last time
            remembered = slicer.app.userSettings().value(CLINIC_FOLDER_SETTING, "")
            if remembered:
                self._parameterNode.clinicFolder = pathlib.Path(str(remembered))

    def setParameterNode(self, inputParameterNode) -> None:
        if self._parameterNode:  # exit() may have let go of it already: let go only of what is still held
            if self._parameterNodeGuiTag is not None:
                self._parameterNode.disconnectGui(self._parameterNodeGuiTag)
            if self.hasObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self.updateGUIFromParameterNode):
                self.removeObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self.updateGUIFromParameterNode)
        self._parameterNode = inputParameterNode
        if self._parameterNode:
            self._parameterNodeGuiTag = self._parameterNode.connectGui(self.ui)
            self.addObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self.updateGUIFromParameterNode)
            self.updateGUIFromParameterNode()

    def updateGUIFromParameterNode(self, caller=None, event=None) -> None:
        if not self._parameterNode:
            return
        busy = self._detection is not None
        self.ui.detectButton.text = _("Cancel") if busy else _("Detect landmarks")
        self.ui.detectButton.enabled = busy or bool(self._parameterNode.inputVolume)
        landmarks = self._parameterNode.landmarks
        hasResult = bool(landmarks and landmarks.GetAttribute("CephLandmarks.Detection"))  # no library import here
        for button in (self.ui.markReviewedButton, self.ui.exportMarkupsButton, self.ui.exportCsvButton,
                       self.ui.exportJsonButton, self.ui.exportReportButton, self.ui.addToClinicButton):
            button.enabled = hasResult
        if landmarks is not self._observedLandmarks:
            self.observeLandmarks(landmarks if hasResult else None)
        running = self._training[0] if self._training else None
        for button, command, label in ((self.ui.trainButton, "train", _("Train")),
                                       (self.ui.calibrateButton, "calibrate", _("Calibrate temperatures")),
                                       (self.ui.evaluateButton, "evaluate", _("Evaluate")),
                                       (self.ui.adaptButton, "adapt", _("Adapt to clinic"))):
            button.enabled = running in (None, command)
            button.text = _("Cancel") if running == command else label
        clinicFolder = chosenPath(self._parameterNode.clinicFolder) or ""
        if self.ui.adaptClinicPathLineEdit.currentPath != clinicFolder:  # the Training tab's view of it
            wasBlocked = self.ui.adaptClinicPathLineEdit.blockSignals(True)
            self.ui.adaptClinicPathLineEdit.currentPath = clinicFolder
            self.ui.adaptClinicPathLineEdit.blockSignals(wasBlocked)
        if clinicFolder:
            slicer.app.userSettings().setValue(CLINIC_FOLDER_SETTING, clinicFolder)

    # --- dependencies and models ---------------------------------------------------------------

    def ensureDependencies(self) -> bool:
        """Offer to install what the requirements list needs and Slicer lacks; True when all is there."""
        from CephLandmarksSlicer import dependencies

        requirements = dependencies.readRequirements(self.resourcePath("requirements.txt"))
        missing = dependencies.missingRequirements(requirements)
        if not missing:
            return True
        if not slicer.util.confirmOkCancelDisplay(
                _("CephLandmarks needs these Python packages: {p}. Install them now? PyTorch is several hundred "
                  "megabytes and can take a few minutes.").format(p=", ".join(name for name, _line in missing))):
            return False
        with slicer.util.tryWithErrorDisplay(_("The Python packages could not be installed."), waitCursor=True):
            dependencies.installRequirements(missing, slicer.util.pip_install, dependencies.pyTorchUtilsInstaller())
        stillMissing = dependencies.missingRequirements(requirements)
        if stillMissing:
            slicer.util.errorDisplay(_("Still missing after installation: {p}. Restart Slicer and try again.").format(
                p=", ".join(name for name, _line in stillMissing)))
        return not stillMissing

    def updateModelList(self, select=None) -> None:
        self.ui.modelSelector.clear()
        for label, path, tooltip in clinic().modelListItems(self.logic.availableModels()):
            self.ui.modelSelector.addItem(label, path)
            self.ui.modelSelector.setItemData(self.ui.modelSelector.count - 1, tooltip, qt.Qt.ToolTipRole)
        if self.ui.modelSelector.count == 0:
            self.ui.modelSelector.addItem(_("(no model installed: import one)"), "")
        if select:
            index = self.ui.modelSelector.findData(str(select))
            if index >= 0:
                self.ui.modelSelector.setCurrentIndex(index)

    def onImportModel(self) -> None:
        path = qt.QFileDialog.getOpenFileName(self.parent, _("Import model"), "", _("Model files (*.safetensors)"))
        if path:
            with slicer.util.tryWithErrorDisplay(_("This file cannot be used as a CephLandmarks model."),
                                                 waitCursor=True):
                self.updateModelList(select=self.logic.importModel(path).path)

    # --- detection -----------------------------------------------------------------------------

    def onLoadRadiograph(self) -> None:
        path = qt.QFileDialog.getOpenFileName(self.parent, _("Load radiograph"), "",
                                              _("Images (*.dcm *.png *.jpg *.jpeg *.bmp *.tif *.tiff *.nrrd *.nii *.mha);;All files (*)"))
        if path:
            with slicer.util.tryWithErrorDisplay(_("Failed to load the radiograph."), waitCursor=True):
                self._parameterNode.inputVolume = slicer.util.loadVolume(path, {"singleFile": True})

    def onDetectButton(self) -> None:
        if self._detection is not None:
            self._detection.cancel()
            return
        if not self.ensureDependencies():
            return
        with slicer.util.tryWithErrorDisplay(_("Landmark detection could not start."), waitCursor=True):
            modelPath = self.ui.modelSelector.currentData
            if not modelPath:
                raise ValueError(_("No model is available: import a model file first."))
            volumeNode = self._parameterNode.inputVolume
            job = self.logic.prepareDetection(volumeNode, modelPath, self._parameterNode.spacingMm,
                                              self._parameterNode.device)
            self._detection = job
            job.start(self.onDetectionProgress, lambda detection, error, cancelled:
                      self.onDetectionDone(volumeNode, detection, error, cancelled))
            self.ui.detectProgressBar.setRange(0, 100)
            self.ui.detectProgressBar.setValue(0)
            self.ui.detectProgressBar.show()
            self.ui.statusLabel.text = _("Detecting landmarks...")
            self.updateGUIFromParameterNode()

    def onDetectionProgress(self, fraction, stage) -> None:
        self.ui.detectProgressBar.setValue(int(100 * fraction))
        if stage:
            self.ui.statusLabel.text = stage[:1].upper() + stage[1:] + "..."

    def onDetectionDone(self, volumeNode, detection, error, cancelled) -> None:
        self._detection = None
        self.ui.detectProgressBar.hide()
        self.updateGUIFromParameterNode()
        if cancelled:
            self.ui.statusLabel.text = _("Cancelled.")
            return
        if error:
            self.ui.statusLabel.text = _("Detection failed.")
            slicer.util.errorDisplay(_("Landmark detection failed: {e}").format(e=error))
            return
        if volumeNode.GetScene() is None:  # the volume was deleted meanwhile
            self.ui.statusLabel.text = _("The radiograph was removed; the result was discarded.")
            return
        with slicer.util.tryWithErrorDisplay(_("The detection could not be shown."), waitCursor=True):
            target = self.chooseTargetNode(volumeNode)
            if target is False:
                self.ui.statusLabel.text = _("The new detection was discarded; your corrections are kept.")
                return
            node = self.logic.showDetection(detection, volumeNode, target)
            self._parameterNode.landmarks = node
            self.refreshTables()
            flagged = sum(lm.flagged for lm in detection.landmarks)
            self.ui.statusLabel.text = "\n".join(
                [_("{n} landmarks, {f} flagged for review.").format(n=len(detection.landmarks), f=flagged)]
                + [f"• {w[:1].upper()}{w[1:]}." for w in detection.warnings()])
            if detection.spacing_source == "assumed":
                slicer.util.warningDisplay(_("The image has no pixel spacing; {mm:g} mm per pixel was assumed. "
                                             "Set the pixel spacing and detect again for correct millimetres.")
                                           .format(mm=detection.spacing_mm[0]))
            self.updateOverlays()

    def chooseTargetNode(self, volumeNode):
        """Existing untouched node to overwrite, None for a new node, or False to abandon the result."""
        node = self._parameterNode.landmarks
        helpers = mrml()
        if not (node and helpers.isLandmarksNode(node)
                and node.GetNodeReferenceID(helpers.VOLUME_REFERENCE) == volumeNode.GetID()):
            return None
        if not helpers.isEdited(node):
            return node
        box = qt.QMessageBox(qt.QMessageBox.Question, _("Corrected landmarks"),
                             _("You have corrected points in '{name}'. Keep them and put the new detection in a "
                               "new node?").format(name=node.GetName()), qt.QMessageBox.NoButton, self.parent)
        newButton = box.addButton(_("New node"), qt.QMessageBox.AcceptRole)
        overwriteButton = box.addButton(_("Overwrite my corrections"), qt.QMessageBox.DestructiveRole)
        box.addButton(qt.QMessageBox.Cancel)
        box.setDefaultButton(newButton)
        box.exec_()
        if box.clickedButton() == newButton:
            return None
        return node if box.clickedButton() == overwriteButton else False

    # --- review --------------------------------------------------------------------------------

    def observeLandmarks(self, node) -> None:
        events = (vtkMRMLMarkupsFiducialNode.PointEndInteractionEvent, vtkMRMLMarkupsFiducialNode.PointRemovedEvent,
                  vtkMRMLMarkupsFiducialNode.PointModifiedEvent, vtkMRMLMarkupsFiducialNode.PointPositionDefinedEvent,
                  vtkMRMLMarkupsFiducialNode.PointPositionUndefinedEvent)
        if self._observedLandmarks is not None:
            for event in events:
                if self.hasObserver(self._observedLandmarks, event, self.onLandmarksEdited):
                    self.removeObserver(self._observedLandmarks, event, self.onLandmarksEdited)
        self._observedLandmarks = node
        if node is not None:
            for event in events:
                self.addObserver(node, event, self.onLandmarksEdited)
        self.refreshTables()

    def onLandmarksEdited(self, caller=None, event=None) -> None:
        self._editTimer.start()

    def refreshTables(self) -> None:
        """Landmark table and measurements from the current (corrected) points."""
        node = self._observedLandmarks
        if node is None or node.GetScene() is None:
            self.ui.landmarksTable.setMRMLTableNode(None)
            self.ui.measurementsTableView.setMRMLTableNode(None)
            return
        helpers = mrml()
        helpers.updatePointColors(node)  # colour = stored flag, even if a Selected box was toggled
        self.ui.landmarksTable.setMRMLTableNode(helpers.updateTable(slicer.mrmlScene, node))
        measurements = helpers.updateMeasurementsTable(slicer.mrmlScene, node)  # None: a scene saved without the maps
        self.ui.measurementsTableView.setMRMLTableNode(
            measurements or node.GetNodeReference(helpers.MEASUREMENTS_REFERENCE))

    def onTableClicked(self, index) -> None:
        node, table = self._observedLandmarks, self.ui.landmarksTable.mrmlTableNode()
        if node is None or table is None:
            return
        helpers = mrml()
        pointIndex = helpers.controlPointIndex(node, helpers.tableRowLandmarkIndex(table, index.row()))
        if pointIndex >= 0:
            slicer.modules.markups.logic().JumpSlicesToNthPointInMarkup(node.GetID(), pointIndex, True)

    def onMarkReviewed(self) -> None:
        node, table = self._observedLandmarks, self.ui.landmarksTable.mrmlTableNode()
        rows = sorted({index.row() for index in self.ui.landmarksTable.selectionModel().selectedIndexes()})
        if not rows:
            slicer.util.errorDisplay(_("Select one or more rows of the landmark table first."))
            return
        helpers = mrml()
        for landmarkIndex in [helpers.tableRowLandmarkIndex(table, row) for row in rows]:
            helpers.setReviewed(node, landmarkIndex)
        self.refreshTables()

    def updateOverlays(self, _unused=None) -> None:
        node = self._parameterNode.landmarks if self._parameterNode else None
        helpers = mrml()
        if not (node and helpers.isLandmarksNode(node)):
            return
        helpers.setContoursVisible(node, self._parameterNode.showContours)
        heatmap = node.GetNodeReference(helpers.HEATMAP_REFERENCE)
        volume = node.GetNodeReference(helpers.VOLUME_REFERENCE)
        showHeatmap = self._parameterNode.showHeatmap and heatmap is not None
        slicer.util.setSliceViewerLayers(background=volume, foreground=heatmap if showHeatmap else None,
                                         foregroundOpacity=0.5 if showHeatmap else 0.0)

    def onExport(self, kind) -> None:
        node = self._parameterNode.landmarks
        filters = {"mrk.json": _("Markups (*.mrk.json)"), "csv": _("CSV (*.csv)"), "json": _("CLI JSON (*.json)")}
        path = qt.QFileDialog.getSaveFileName(self.parent, _("Export landmarks"), f"{node.GetName()}.{kind}",
                                              filters[kind])
        if path:
            with slicer.util.tryWithErrorDisplay(_("Export failed."), waitCursor=True):
                helpers = mrml()
                {"mrk.json": helpers.exportMarkupsJson, "csv": helpers.exportCsv,
                 "json": helpers.exportCliJson}[kind](node, path)

    def onExportReport(self) -> None:
        node = self._parameterNode.landmarks
        folder = qt.QFileDialog.getExistingDirectory(self.parent, _("Save the report (PDF and PNG) to"))
        if folder and self.ensureDependencies():
            with slicer.util.tryWithErrorDisplay(_("The report could not be written."), waitCursor=True):
                written = mrml().exportReport(node, outDir=folder)
                self.ui.statusLabel.text = _("Report written: {p}").format(p=", ".join(str(p) for p in written))

    def onAddToClinic(self) -> None:
        """The reviewed radiograph and its current points into the clinic dataset folder (whole or nothing)."""
        from CephLandmarksLib.annotations.clinic_dataset import DuplicateCase

        node, folder = self._parameterNode.landmarks, chosenPath(self._parameterNode.clinicFolder)
        helpers = clinic()
        with slicer.util.tryWithErrorDisplay(_("The radiograph was not added to the clinic dataset."),
                                             waitCursor=True):
            if not folder:
                raise ValueError(_("Choose the clinic dataset folder first (Clinic dataset)."))
            helpers.clinicCase(node)  # missing points, unknown spacing, wrong volume: refused before asking
            unreviewed = helpers.unreviewedFlagged(node)
            if unreviewed and not slicer.util.confirmYesNoDisplay(
                    _("{n} flagged points were neither reviewed nor corrected: {p}. Add this detection to the "
                      "clinic dataset anyway?").format(n=len(unreviewed), p=", ".join(unreviewed)),
                    windowTitle=_("Unreviewed flagged points")):
                self.ui.statusLabel.text = _("Not added: review the flagged points first.")
                return
            try:
                added = helpers.addToClinicDataset(node, folder)
            except DuplicateCase as duplicate:
                if not slicer.util.confirmYesNoDisplay(
                        _("This radiograph is already in the clinic dataset as {i}. Replace its landmarks with "
                          "the ones shown now?").format(i=duplicate.image), windowTitle=_("Already in the clinic dataset")):
                    self.ui.statusLabel.text = _("Not added: the radiograph is already in the clinic dataset.")
                    return
                added = helpers.addToClinicDataset(node, folder, replace=True)
            self.ui.statusLabel.text = _("{what} {i} in the clinic dataset {f} ({n} radiographs).").format(
                what=_("Replaced") if added.replaced else _("Added"), i=added.image_path.name, f=folder,
                n=added.n_images)

    # --- training, calibration and evaluation (the CLI in a background process) ----------------

    def onTrainingCommand(self, command) -> None:
        if self._training is not None:
            self._training[1].kill()  # the Cancel button
            return
        if not self.ensureDependencies():
            return
        p = self._parameterNode
        with slicer.util.tryWithErrorDisplay(_("Cannot start {c}.").format(c=command)):
            onFinished = lambda code, crashed: self.onProcessFinished(command, code, crashed)  # noqa: E731
            if command == "adapt":
                process, output = self.logic.adaptProcess(self.ui.modelSelector.currentData,
                                                          chosenPath(p.clinicFolder), self.onProcessLine, onFinished)
            else:
                process, output = self.logic.trainingProcess(
                    command, chosenPath(p.datasetFolder), chosenPath(p.trainModelPath), p.epochs, p.inputSize,
                    p.trainDevice, p.evaluateSplit, chosenPath(p.evaluateFolder), self.onProcessLine,
                    onFinished), None
            self._training = (command, process, time.time(), output)
            self._trainingLines = []
            self.ui.trainLogTextEdit.appendPlainText("$ " + self.logic.displayCommand(process.commandLine))
            self.ui.trainProgressBar.setRange(0, 0)
            process.start()
            self.updateGUIFromParameterNode()

    def onProcessLine(self, line) -> None:
        from CephLandmarksSlicer.process import progressFromLine

        self._trainingLines.append(line)
        progress = progressFromLine(line)
        if progress is not None:
            self.ui.trainProgressBar.setRange(0, 1000)
            self.ui.trainProgressBar.setValue(int(progress * 1000))
        else:
            self.ui.trainLogTextEdit.appendPlainText(line)

    def onAdaptClinicPathChanged(self, path) -> None:
        if self._parameterNode:
            self._parameterNode.clinicFolder = pathlib.Path(path) if path else pathlib.Path(".")

    def onProcessFinished(self, command, exitCode, crashed) -> None:
        started, output = (self._training[2], self._training[3]) if self._training else (0.0, None)
        self._training = None
        if output and (crashed or exitCode != 0):  # cancelled or failed: no partial model is left
            clinic().removeLeftovers(output)
        self.ui.trainProgressBar.setRange(0, 1)
        self.ui.trainProgressBar.setValue(1 if exitCode == 0 else 0)
        self.ui.trainLogTextEdit.appendPlainText(
            _("{c} cancelled.").format(c=command) if crashed else
            _("{c} finished (exit code {e}).").format(c=command, e=exitCode))
        if exitCode != 0 and not crashed:
            from CephLandmarksSlicer.process import failureMessage

            slicer.util.errorDisplay(_("{c} failed: {e}").format(
                c=command.capitalize(), e=failureMessage(exitCode, crashed, self._trainingLines)))
        if exitCode == 0 and not crashed:
            with slicer.util.tryWithErrorDisplay(_("The results of {c} could not be shown.").format(c=command)):
                if command in ("train", "calibrate"):
                    modelPath = chosenPath(self._parameterNode.trainModelPath)
                    self.logic.registerTrainedModel(modelPath)
                    self.updateModelList(select=modelPath)
                if command == "adapt":
                    entry = self.logic.registerTrainedModel(output)
                    self.updateModelList(select=entry.path)
                    self.ui.trainLogTextEdit.appendPlainText(
                        clinic().adaptationSummary(entry.info, entry.path) or _("Adapted model: {p}").format(p=output))
                    report = clinic().reportFolder(output)
                    if report.is_dir():
                        self.ui.trainLogTextEdit.appendPlainText(_("Adaptation report: {p}").format(p=report))
                if command == "evaluate":
                    self.showPlots(chosenPath(self._parameterNode.evaluateFolder), started)
        self.updateGUIFromParameterNode()

    def showPlots(self, folder, writtenSince) -> None:
        """The PNG plots of `folder` written by this run (not older ones), and the metrics summary."""
        self.ui.plotListWidget.clear()
        for png in sorted(pathlib.Path(folder).glob("*.png")):
            if png.stat().st_mtime >= writtenSince - 1.0:
                self.ui.plotListWidget.addItem(str(png))
        self.ui.metricsLabel.text = self.logic.metricsSummary(folder)
        if self.ui.plotListWidget.count:
            self.ui.plotListWidget.setCurrentRow(0)

    def onPlotSelected(self, path) -> None:
        self.ui.plotLabel.setPixmap(qt.QPixmap(path).scaledToWidth(max(200, self.ui.plotLabel.width)))

    def onSavePlots(self) -> None:
        import shutil

        folder = qt.QFileDialog.getExistingDirectory(self.parent, _("Save plots to"))
        if folder:
            with slicer.util.tryWithErrorDisplay(_("Could not save the plots.")):
                for i in range(self.ui.plotListWidget.count):
                    shutil.copy2(self.ui.plotListWidget.item(i).text(), folder)
                metrics = pathlib.Path(chosenPath(self._parameterNode.evaluateFolder) or ".") / "metrics.json"
                if metrics.is_file():
                    shutil.copy2(metrics, folder)


#
# CephLandmarksLogic
#


class CephLandmarksLogic(ScriptedLoadableModuleLogic):
    """Starts the CLI in a separate process (detection, training) and shows detections as MRML nodes."""

    def __init__(self) -> None:
        ScriptedLoadableModuleLogic.__init__(self)

    def getParameterNode(self):
        return CephLandmarksParameterNode(super().getParameterNode())

    @staticmethod
    def pythonSlicer() -> str:
        from CephLandmarksSlicer.process import pythonSlicerExecutable

        return pythonSlicerExecutable(slicer.app.applicationFilePath())

    # models

    @staticmethod
    def registry():
        """The model registry (CephLandmarksLib.store.registry): shipped, imported, trained and adapted models; no torch."""
        from CephLandmarksLib.store.registry import ModelRegistry

        settingsDir = os.path.dirname(slicer.app.slicerUserSettingsFilePath)  # survives Slicer upgrades
        return ModelRegistry(pathlib.Path(settingsDir) / "CephLandmarks" / "Models")

    def availableModels(self) -> list:
        return self.registry().models()

    def importModel(self, path):
        return self.registry().import_model(path)

    def registerTrainedModel(self, path):
        return self.registry().register_trained(path)

    # detection

    def prepareDetection(self, volumeNode, modelPath, spacingMm=0.0, device="cpu"):
        """A DetectionJob for the volume (written to a temporary file); call .start(...) or .run()."""
        from CephLandmarksSlicer.process import DetectionJob

        if volumeNode is None:
            raise ValueError(_("Select an input radiograph."))
        radiograph = mrml().radiographFromVolume(volumeNode, spacingMm or None)
        return DetectionJob(radiograph, modelPath, self.pythonSlicer(), libraryFolder(), device)

    def detect(self, volumeNode, modelPath, spacingMm=0.0, device="cpu"):
        """Synchronous detection (scripts and tests): the Detection; raises RuntimeError with the CLI's message."""
        detection, error, _cancelled = self.prepareDetection(volumeNode, modelPath, spacingMm, device).run()
        if error:
            raise RuntimeError(error)
        return detection

    def showDetection(self, detection, volumeNode, node=None):
        """Landmarks node (new, or `node` overwritten), contour models, heatmap volume and tables."""
        helpers = mrml()
        node = helpers.createLandmarksNode(slicer.mrmlScene, detection, volumeNode, node)
        helpers.createContourModels(slicer.mrmlScene, detection, volumeNode, node)
        heatmap = helpers.createHeatmapVolume(slicer.mrmlScene, detection, volumeNode, node)
        heatmap.SetAttribute("CephLandmarks.Heatmap", "1")
        helpers.updateTable(slicer.mrmlScene, node)
        helpers.createMeasurementsTable(slicer.mrmlScene, detection, landmarksNode=node)
        return node

    # training, calibration and evaluation

    def adaptProcess(self, baseModel, clinicFolder, onLine=None, onFinished=None):
        """(BackgroundProcess running `ceph-landmarks adapt`, the adapted model file it will write): the
        per-user model folder, <base stem>-adapted-<clinic folder>.safetensors, never an existing file."""
        from CephLandmarksSlicer.process import BackgroundProcess, processEnvironment

        helpers = clinic()
        helpers.checkAdaptInputs(baseModel, clinicFolder)
        output = helpers.adaptedModelPath(self.registry().user_dir, baseModel, clinicFolder)
        commandLine = helpers.adaptCommand(self.pythonSlicer(), baseModel, clinicFolder, output)
        output.parent.mkdir(parents=True, exist_ok=True)
        return BackgroundProcess(commandLine, processEnvironment(libraryFolder()), onLine or logging.info,
                                 onFinished or (lambda code, crashed: None)), output

    def trainingProcess(self, command, dataset, modelPath, epochs=40, inputSize="320x416", device="auto",
                        split="test1", outFolder=None, onLine=None, onFinished=None):
        """A BackgroundProcess running `ceph-landmarks train|calibrate|evaluate`; checks the fields first."""
        from CephLandmarksSlicer.process import BackgroundProcess, processEnvironment

        commandLine = self.cliArguments(command, dataset, modelPath, epochs, inputSize, device, split, outFolder)
        return BackgroundProcess(commandLine, processEnvironment(libraryFolder()), onLine or logging.info,
                                 onFinished or (lambda code, crashed: None))

    def cliArguments(self, command, dataset, modelPath, epochs=40, inputSize="320x416", device="auto",
                     split="test1", outFolder=None) -> list:
        from CephLandmarksSlicer.process import cliCommand

        if not dataset:
            raise ValueError(_("Choose the dataset folder."))
        if not os.path.isdir(dataset):
            raise ValueError(_("The dataset folder does not exist: {p}").format(p=dataset))
        if not modelPath:
            raise ValueError(_("Choose the model file (.safetensors)."))
        python = self.pythonSlicer()
        if command == "train":
            return cliCommand(python, "train", "--dataset", dataset, "--out", modelPath, "--epochs", epochs,
                              "--input-size", inputSize, "--device", device)
        if not os.path.isfile(modelPath):
            raise ValueError(_("The model file does not exist: {p}").format(p=modelPath))
        if command == "calibrate":
            return cliCommand(python, "calibrate", "--model", modelPath, "--dataset", dataset)
        if not outFolder:
            raise ValueError(_("Choose a folder for the evaluation plots."))
        return cliCommand(python, "evaluate", "--model", modelPath, "--dataset", dataset, "--split", split,
                          "--out", outFolder, "--device", "cpu" if device == "auto" else device)

    @staticmethod
    def displayCommand(commandLine) -> str:
        from CephLandmarksSlicer.process import displayCommand

        return displayCommand(commandLine)

    @staticmethod
    def metricsSummary(folder) -> str:
        import json

        path = pathlib.Path(folder) / "metrics.json"
        if not path.is_file():
            return ""
        m = json.loads(path.read_text())
        parts = [f"MRE {m['mre_mm']:.2f} mm" if "mre_mm" in m else "",
                 f"SDR 2 mm {m['sdr']['2.0']:.1f} %" if "2.0" in m.get("sdr", {}) else "",
                 f"ECE {m['ece']:.3f}" if "ece" in m else ""]
        return ", ".join(p for p in parts if p)


#
# CephLandmarksTest
#


class CephLandmarksTest(ScriptedLoadableModuleTest):
    """Runs in Slicer (Reload and Test) and in the headless harness: no data or internet needed."""

    def setUp(self):
        slicer.mrmlScene.Clear()

    def runTest(self):
        self.setUp()
        self.test_DetectOnRadiograph()

    def sampleVolume(self):
        """A real ISBI radiograph if ../shared/data is present, else a synthetic skull-like image."""
        import numpy as np

        moduleDir = pathlib.Path(__file__).resolve().parent
        for parent in [moduleDir, *moduleDir.parents]:
            sample = parent / "shared" / "data" / "isbi2015" / "RawImage" / "Test1Data" / "151.jpg"
            if sample.is_file():
                return slicer.util.loadVolume(str(sample), {"singleFile": True}), True
        yy, xx = np.mgrid[0:480, 0:384]
        pixels = 200.0 * np.exp(-(((xx - 190) / 120.0) ** 2 + ((yy - 230) / 160.0) ** 2)) + 20.0
        volume = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "synthetic radiograph")
        slicer.util.updateVolumeFromArray(volume, pixels[None].astype(np.float32))
        volume.SetSpacing(0.5, 0.5, 1.0)
        return volume, False

    def test_DetectOnRadiograph(self):
        self.delayDisplay("Starting the test")
        logic = CephLandmarksLogic()
        models = logic.availableModels()
        if not models:
            self.delayDisplay("No model installed (Resources/Models); skipping detection")
            return
        volume, real = self.sampleVolume()
        detection = logic.detect(volume, models[0].path)
        node = logic.showDetection(detection, volume)
        self.assertEqual(node.GetNumberOfControlPoints(), 19)
        helpers = mrml()
        width, height = detection.image_size
        for row in helpers.landmarkRows(node):
            self.assertTrue(0.0 <= row["confidence"] <= 1.0)
            self.assertTrue(row["ere_mm"] is None or row["ere_mm"] >= 0.0)
            self.assertTrue(0.0 <= row["p_large_error"] <= 1.0)
            if row.get("missing") or row.get("x_px") is None:  # a synthetic image may lack some anatomy
                self.assertTrue(row["flagged"])
                continue
            self.assertTrue(-0.5 <= row["x_px"] <= width - 0.5)
            self.assertTrue(-0.5 <= row["y_px"] <= height - 0.5)
        if real:  # accuracy is only asserted on a real radiograph
            self.assertLess(sum(row["flagged"] for row in helpers.landmarkRows(node)), 10)
        self.assertEqual(len(helpers.contourModels(node)), 2)
        table = node.GetNodeReference(helpers.TABLE_REFERENCE)
        self.assertEqual(table.GetTable().GetNumberOfRows(), 19)
        self.assertIsNotNone(node.GetNodeReference(helpers.MEASUREMENTS_REFERENCE))
        self.assertFalse(helpers.isEdited(node))
        self.delayDisplay("Test passed")
