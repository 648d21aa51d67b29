import importlib.util
import json
import logging
import os
import pathlib
import shutil
import threading
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

# Python packages the library needs besides torch (installed on demand, never in setup()).
REQUIRED_PACKAGES = {"safetensors": "safetensors", "contourpy": "contourpy", "SimpleITK": "SimpleITK"}


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
            "certain each one is: red points are flagged (expected radial error above the model's threshold), "
            "green points are confident. The table gives each point's probability of an error over 4 mm. "
            "Contours are the 50 % and 90 % credible regions of each heatmap.")
        self.parent.acknowledgementText = _(
            "Landmarks and data conventions of the ISBI 2015 Grand Challenge in cephalometric X-ray analysis.")


#
# CephLandmarksParameterNode
#


@parameterNodeWrapper
class CephLandmarksParameterNode:
    inputVolume: vtkMRMLScalarVolumeNode
    landmarks: vtkMRMLMarkupsFiducialNode
    spacingMm: Annotated[float, WithinRange(0.0, 10.0)] = 0.0  # 0: the image's own spacing
    device: Annotated[str, Choice(["cpu", "cuda", "mps"])] = "cpu"
    showContours: bool = True
    showHeatmap: bool = False
    datasetFolder: pathlib.Path
    trainModelPath: pathlib.Path
    evaluateFolder: pathlib.Path
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
        self._parameterNode = None
        self._parameterNodeGuiTag = None
        self._observedLandmarks = None
        self._process = None
        self._pollTimer = qt.QTimer()
        self._pollTimer.setInterval(100)
        self._pollTimer.timeout.connect(self.onPollDetection)
        self._tableTimer = qt.QTimer()  # refreshes the table once after a burst of point edits
        self._tableTimer.setSingleShot(True)
        self._tableTimer.setInterval(300)
        self._tableTimer.timeout.connect(self.refreshTable)

    def setup(self) -> None:
        ScriptedLoadableModuleWidget.setup(self)
        uiWidget = slicer.util.loadUI(self.resourcePath("UI/CephLandmarks.ui"))
        self.layout.addWidget(uiWidget)
        self.ui = slicer.util.childWidgetVariables(uiWidget)
        uiWidget.setMRMLScene(slicer.mrmlScene)
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
        self.ui.trainButton.connect("clicked(bool)", lambda: self.onTrainingCommand("train"))
        self.ui.calibrateButton.connect("clicked(bool)", lambda: self.onTrainingCommand("calibrate"))
        self.ui.evaluateButton.connect("clicked(bool)", lambda: self.onTrainingCommand("evaluate"))
        self.ui.plotListWidget.connect("currentTextChanged(QString)", self.onPlotSelected)
        self.ui.savePlotsButton.connect("clicked(bool)", self.onSavePlots)

        self.updateModelList()
        self.initializeParameterNode()

    def cleanup(self) -> None:
        self.removeObservers()
        self.logic.cancelDetection()
        if self._process is not None:
            self._process.kill()

    def enter(self) -> None:
        self.initializeParameterNode()

    def exit(self) -> None:
        if self._parameterNode:
            self._parameterNode.disconnectGui(self._parameterNodeGuiTag)
            self._parameterNodeGuiTag = None
            self.removeObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self.updateGUIFromParameterNode)

    def onSceneStartClose(self, caller, event) -> None:
        self.setParameterNode(None)

    def onSceneEndClose(self, caller, event) -> None:
        if self.parent.isEntered:
            self.initializeParameterNode()

    def initializeParameterNode(self) -> None:
        self.setParameterNode(self.logic.getParameterNode())
        if not self._parameterNode.inputVolume:
            firstVolumeNode = slicer.mrmlScene.GetFirstNodeByClass("vtkMRMLScalarVolumeNode")
            if firstVolumeNode and not firstVolumeNode.GetAttribute("CephLandmarks.Heatmap"):
                self._parameterNode.inputVolume = firstVolumeNode

    def setParameterNode(self, inputParameterNode) -> None:
        if self._parameterNode:
            self._parameterNode.disconnectGui(self._parameterNodeGuiTag)
            self.removeObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self.updateGUIFromParameterNode)
        self._parameterNode = inputParameterNode
        if self._parameterNode:
            self._parameterNodeGuiTag = self._parameterNode.connectGui(self.ui)
            self.addObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self.updateGUIFromParameterNode)
            self.updateGUIFromParameterNode()

    def updateGUIFromParameterNode(self, caller=None, event=None) -> None:
        if not self._parameterNode:
            return
        busy = self.logic.detectionRunning
        self.ui.detectButton.text = _("Cancel") if busy else _("Detect landmarks")
        self.ui.detectButton.enabled = busy or bool(self._parameterNode.inputVolume)
        landmarks = self._parameterNode.landmarks
        hasResult = bool(landmarks and landmarks.GetAttribute("CephLandmarks.Detection"))  # no torch import here
        for button in (self.ui.markReviewedButton, self.ui.exportMarkupsButton, self.ui.exportCsvButton,
                       self.ui.exportJsonButton):
            button.enabled = hasResult
        if landmarks is not self._observedLandmarks:
            self.observeLandmarks(landmarks if hasResult else None)
        trainingBusy = self._process is not None
        for button, command in ((self.ui.trainButton, "train"), (self.ui.calibrateButton, "calibrate"),
                                (self.ui.evaluateButton, "evaluate")):
            running = bool(button.property("running"))
            button.enabled = not trainingBusy or running
            button.text = _("Cancel") if running else command.capitalize()

    # --- detection -----------------------------------------------------------------------------

    def onLoadRadiograph(self) -> None:
        path = qt.QFileDialog.getOpenFileName(self.parent, _("Load radiograph"), "",
                                              _("Images (*.dcm *.png *.jpg *.jpeg *.bmp *.tif *.tiff *.nrrd *.nii *.mha);;All files (*)"))
        if path:
            with slicer.util.tryWithErrorDisplay(_("Failed to load the radiograph."), waitCursor=True):
                self._parameterNode.inputVolume = slicer.util.loadVolume(path, {"singleFile": True})

    def updateModelList(self) -> None:
        self.ui.modelSelector.clear()
        for label, path in self.logic.availableModels():
            self.ui.modelSelector.addItem(label, path)
        if self.ui.modelSelector.count == 0:
            self.ui.modelSelector.addItem(_("(no model installed: import one)"), "")

    def onImportModel(self) -> None:
        path = qt.QFileDialog.getOpenFileName(self.parent, _("Import model"), "", _("Model files (*.safetensors)"))
        if path:
            with slicer.util.tryWithErrorDisplay(_("This file cannot be used as a CephLandmarks model."),
                                                 waitCursor=True):
                imported = self.logic.importModel(path)
                self.updateModelList()
                self.ui.modelSelector.setCurrentIndex(self.ui.modelSelector.findData(str(imported)))

    def onDetectButton(self) -> None:
        if self.logic.detectionRunning:
            self.logic.cancelDetection()
            self.ui.statusLabel.text = _("Cancelled.")
            self.onDetectionFinished()
            return
        if not self.ensurePythonPackages():
            return
        with slicer.util.tryWithErrorDisplay(_("Landmark detection could not start."), waitCursor=True):
            modelPath = self.ui.modelSelector.currentData
            if not modelPath:
                raise ValueError(_("No model is available: import a model file first."))
            self.logic.startDetection(self._parameterNode.inputVolume, modelPath, self._parameterNode.spacingMm,
                                      self._parameterNode.device)
            self.ui.detectProgressBar.setRange(0, 0)  # busy indicator: one network pass, no steps
            self.ui.detectProgressBar.show()
            self.ui.statusLabel.text = _("Detecting landmarks...")
            self._pollTimer.start()
            self.updateGUIFromParameterNode()

    def onPollDetection(self) -> None:
        if self.logic.detectionRunning:
            return
        self._pollTimer.stop()
        self.onDetectionFinished()
        with slicer.util.tryWithErrorDisplay(_("Landmark detection failed."), waitCursor=True):
            detection, volumeNode = self.logic.takeDetectionResult()
            if detection is None:
                return
            target = self.chooseTargetNode(volumeNode)
            if target is False:
                return
            node = self.logic.showDetection(detection, volumeNode, target)
            self._parameterNode.landmarks = node
            self.refreshTable()  # landmark and measurement tables, also when a node was overwritten
            flagged = sum(lm.flagged for lm in detection.landmarks)
            # The detection's warnings (left-facing, landmarks missing or near the edge, unknown spacing)
            # under the count, one a line.
            self.ui.statusLabel.wordWrap = True
            self.ui.statusLabel.text = "\n".join(
                [_("{n} landmarks, {f} flagged for review.").format(n=len(detection.landmarks), f=flagged)]
                + [f"• {w[:1].upper()}{w[1:]}." for w in detection.warnings()])
            if detection.spacing_source == "assumed":
                slicer.util.warningDisplay(_("The image has no pixel spacing; 0.1 mm per pixel was assumed. "
                                             "Set the pixel spacing and detect again for correct millimetres."))
            self.updateOverlays()

    def onDetectionFinished(self) -> None:
        self.ui.detectProgressBar.hide()
        self.updateGUIFromParameterNode()

    def chooseTargetNode(self, volumeNode):
        """Existing untouched node to overwrite, None for a new node, or False to abandon the result."""
        node = self._parameterNode.landmarks
        mrml = mrmlHelpers()
        if not (node and mrml.isLandmarksNode(node) and node.GetNodeReferenceID(mrml.VOLUME_REFERENCE)
                == volumeNode.GetID()):
            return None
        if not mrml.isEdited(node):
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

    def ensurePythonPackages(self) -> bool:
        """Offer to install torch (PyTorch Utils) and the other packages the library needs."""
        if importlib.util.find_spec("torch") is None:
            if not slicer.util.confirmOkCancelDisplay(
                    _("Landmark detection needs PyTorch, which is not installed. Install it now? "
                      "This downloads several hundred megabytes and can take a few minutes.")):
                return False
            with slicer.util.tryWithErrorDisplay(_("PyTorch could not be installed."), waitCursor=True):
                try:
                    import PyTorchUtils

                    if PyTorchUtils.PyTorchUtilsLogic().installTorch(askConfirmation=False) is None:
                        raise RuntimeError(_("PyTorch Utils did not install torch."))
                except ImportError:
                    slicer.util.pip_install("torch")
            if importlib.util.find_spec("torch") is None:
                return False
        missing = [pkg for module, pkg in REQUIRED_PACKAGES.items() if importlib.util.find_spec(module) is None]
        if missing:
            if not slicer.util.confirmOkCancelDisplay(
                    _("Landmark detection needs these Python packages: {p}. Install them now?").format(
                        p=", ".join(missing))):
                return False
            with slicer.util.tryWithErrorDisplay(_("Python packages could not be installed."), waitCursor=True):
                slicer.util.pip_install(missing)
        return all(importlib.util.find_spec(m) is not None for m in REQUIRED_PACKAGES)

    # --- results -------------------------------------------------------------------------------

    def observeLandmarks(self, node) -> None:
        if self._observedLandmarks is not None:
            for event in (vtkMRMLMarkupsFiducialNode.PointEndInteractionEvent,
                          vtkMRMLMarkupsFiducialNode.PointRemovedEvent, vtkMRMLMarkupsFiducialNode.PointModifiedEvent):
                self.removeObserver(self._observedLandmarks, event, self.onLandmarksEdited)
        self._observedLandmarks = node
        if node is not None:
            for event in (vtkMRMLMarkupsFiducialNode.PointEndInteractionEvent,
                          vtkMRMLMarkupsFiducialNode.PointRemovedEvent, vtkMRMLMarkupsFiducialNode.PointModifiedEvent):
                self.addObserver(node, event, self.onLandmarksEdited)
        self.refreshTable()

    def onLandmarksEdited(self, caller=None, event=None) -> None:
        self._tableTimer.start()

    def refreshTable(self) -> None:
        node = self._observedLandmarks
        if node is not None and node.GetScene() is not None:
            mrmlHelpers().updatePointColors(node)  # colour = stored flag, even if a Selected box was toggled
            self.ui.landmarksTable.setMRMLTableNode(mrmlHelpers().updateTable(slicer.mrmlScene, node))
            self.ui.measurementsTableView.setMRMLTableNode(
                node.GetNodeReference(mrmlHelpers().MEASUREMENTS_REFERENCE))
        else:
            self.ui.landmarksTable.setMRMLTableNode(None)
            self.ui.measurementsTableView.setMRMLTableNode(None)

    def onTableClicked(self, index) -> None:
        node, table = self._observedLandmarks, self.ui.landmarksTable.mrmlTableNode()
        if node is None or table is None:
            return
        mrml = mrmlHelpers()
        pointIndex = mrml.controlPointIndex(node, mrml.tableRowLandmarkIndex(table, index.row()))
        if pointIndex >= 0:
            slicer.modules.markups.logic().JumpSlicesToNthPointInMarkup(node.GetID(), pointIndex, True)

    def onMarkReviewed(self) -> None:
        node, table = self._observedLandmarks, self.ui.landmarksTable.mrmlTableNode()
        rows = sorted({index.row() for index in self.ui.landmarksTable.selectionModel().selectedIndexes()})
        if not rows:
            slicer.util.errorDisplay(_("Select one or more rows of the landmark table first."))
            return
        mrml = mrmlHelpers()
        for landmarkIndex in [mrml.tableRowLandmarkIndex(table, row) for row in rows]:
            mrml.setReviewed(node, landmarkIndex)
        self.refreshTable()

    def updateOverlays(self, _unused=None) -> None:
        node = self._parameterNode.landmarks if self._parameterNode else None
        mrml = mrmlHelpers()
        if not (node and mrml.isLandmarksNode(node)):
            return
        mrml.setContoursVisible(node, self._parameterNode.showContours)
        heatmap = node.GetNodeReference(mrml.HEATMAP_REFERENCE)
        volume = node.GetNodeReference(mrml.VOLUME_REFERENCE)
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
                mrml = mrmlHelpers()
                {"mrk.json": mrml.exportMarkupsJson, "csv": mrml.exportCsv, "json": mrml.exportCliJson}[kind](node, path)

    # --- training (background process running the CLI) ----------------------------------------

    def onTrainingCommand(self, command) -> None:
        if self._process is not None:
            self._process.kill()  # the Cancel button
            return
        p = self._parameterNode
        with slicer.util.tryWithErrorDisplay(_("Cannot start {c}.").format(c=command)):
            args = self.logic.cliArguments(command, str(p.datasetFolder), str(p.trainModelPath), p.epochs,
                                           p.inputSize, p.trainDevice, p.evaluateSplit, str(p.evaluateFolder))
            self._process = qt.QProcess()
            self._process.setProcessChannelMode(qt.QProcess.MergedChannels)
            environment = qt.QProcessEnvironment.systemEnvironment()
            environment.insert("PYTHONPATH", os.pathsep.join(filter(None, [self.logic.moduleDir,
                                                                           os.environ.get("PYTHONPATH")])))
            environment.insert("PYTHONUNBUFFERED", "1")
            self._process.setProcessEnvironment(environment)
            self._process.readyReadStandardOutput.connect(self.onProcessOutput)
            self._process.finished.connect(lambda code, status: self.onProcessFinished(command, code))
            button = {"train": self.ui.trainButton, "calibrate": self.ui.calibrateButton,
                      "evaluate": self.ui.evaluateButton}[command]
            button.setProperty("running", True)
            self.ui.trainLogTextEdit.appendPlainText("$ ceph-landmarks " + " ".join(args[2:]))
            self.ui.trainProgressBar.setRange(0, 0)
            self._process.start(args[0], args[1:])
            self.updateGUIFromParameterNode()

    def onProcessOutput(self) -> None:
        text = bytes(self._process.readAllStandardOutput()).decode("utf-8", "replace")
        for line in text.replace("\r", "\n").splitlines():
            if not line.strip():
                continue
            progress = self.logic.parseProgress(line)
            if progress is not None:
                self.ui.trainProgressBar.setRange(0, 1000)
                self.ui.trainProgressBar.setValue(int(progress * 1000))
            else:
                self.ui.trainLogTextEdit.appendPlainText(line)

    def onProcessFinished(self, command, exitCode) -> None:
        self._process = None
        for button in (self.ui.trainButton, self.ui.calibrateButton, self.ui.evaluateButton):
            button.setProperty("running", False)
        self.ui.trainProgressBar.setRange(0, 1)
        self.ui.trainProgressBar.setValue(1 if exitCode == 0 else 0)
        self.ui.trainLogTextEdit.appendPlainText(_("{c} finished (exit code {e}).").format(c=command, e=exitCode))
        if exitCode == 0 and command in ("evaluate", "calibrate"):
            self.showPlots(str(self._parameterNode.evaluateFolder))
        if exitCode == 0 and command in ("train", "calibrate"):
            self.updateModelList()
        self.updateGUIFromParameterNode()

    def showPlots(self, folder) -> None:
        self.ui.plotListWidget.clear()
        for png in sorted(pathlib.Path(folder).glob("*.png")):
            self.ui.plotListWidget.addItem(str(png))
        self.ui.metricsLabel.text = self.logic.metricsSummary(folder)
        if self.ui.plotListWidget.count:
            self.ui.plotListWidget.setCurrentRow(0)

    def onPlotSelected(self, path) -> None:
        self.ui.plotLabel.setPixmap(qt.QPixmap(path).scaledToWidth(max(200, self.ui.plotLabel.width)))

    def onSavePlots(self) -> None:
        folder = qt.QFileDialog.getExistingDirectory(self.parent, _("Save plots to"))
        if folder:
            with slicer.util.tryWithErrorDisplay(_("Could not save the plots.")):
                for i in range(self.ui.plotListWidget.count):
                    shutil.copy2(self.ui.plotListWidget.item(i).text(), folder)
                metrics = pathlib.Path(str(self._parameterNode.evaluateFolder)) / "metrics.json"
                if metrics.is_file():
                    shutil.copy2(metrics, folder)


def mrmlHelpers():
    """The CephLandmarksMRML module, imported when first needed: it imports CephLandmarksLib, whose
    dependencies (torch) may still have to be installed when the module is loaded."""
    import CephLandmarksMRML as mrml

    return mrml


#
# CephLandmarksLogic
#


class CephLandmarksLogic(ScriptedLoadableModuleLogic):
    """Runs detection in a background thread and turns its result into MRML nodes (via CephLandmarksMRML)."""

    def __init__(self) -> None:
        ScriptedLoadableModuleLogic.__init__(self)
        self.moduleDir = os.path.dirname(os.path.abspath(__file__))
        self._detectors = {}
        self._job = None

    def getParameterNode(self):
        return CephLandmarksParameterNode(super().getParameterNode())

    # models

    @staticmethod
    def userModelsDir() -> pathlib.Path:
        """Per-user folder next to Slicer's version-independent settings file: survives upgrades."""
        settingsDir = os.path.dirname(slicer.app.slicerUserSettingsFilePath)
        return pathlib.Path(settingsDir) / "CephLandmarks" / "Models"

    def availableModels(self):
        """[(label, path)]: the shipped default first, then imported models whose SHA-256 still matches."""
        from CephLandmarksLib.modelfile import file_sha256

        models = [(_("Default: {n}").format(n=p.stem), str(p))
                  for p in sorted((pathlib.Path(self.moduleDir) / "Resources" / "Models").glob("*.safetensors"))]
        manifestPath = self.userModelsDir() / "models.json"
        manifest = json.loads(manifestPath.read_text()) if manifestPath.is_file() else {}
        for name, sha256 in sorted(manifest.items()):
            path = self.userModelsDir() / name
            if path.is_file() and file_sha256(path) == sha256:
                models.append((_("Imported: {n}").format(n=path.stem), str(path)))
            else:
                logging.warning(f"CephLandmarks: imported model {path} is missing or changed; ignored")
        return models

    def importModel(self, path) -> pathlib.Path:
        """Check a model file (it must load), copy it to the per-user folder, record its SHA-256."""
        from CephLandmarksLib.modelfile import file_sha256, load_model

        loaded = load_model(path)  # raises CephError naming the problem
        sha256 = file_sha256(path)
        folder = self.userModelsDir()
        folder.mkdir(parents=True, exist_ok=True)
        target = folder / f"{pathlib.Path(path).stem}-{sha256[:12]}.safetensors"
        shutil.copyfile(path, target)
        manifestPath = folder / "models.json"
        manifest = json.loads(manifestPath.read_text()) if manifestPath.is_file() else {}
        manifest[target.name] = sha256
        manifestPath.write_text(json.dumps(manifest, indent=2))
        logging.info(f"CephLandmarks: imported model {loaded.info.name} {loaded.info.version} as {target}")
        return target

    # detection

    @property
    def detectionRunning(self) -> bool:
        return self._job is not None and self._job["thread"].is_alive()

    def startDetection(self, volumeNode, modelPath, spacingMm=0.0, device="cpu") -> None:
        """Read the volume (main thread), then detect in a background thread; see takeDetectionResult."""
        if volumeNode is None:
            raise ValueError(_("Select an input radiograph."))
        radiograph = mrmlHelpers().radiographFromVolume(volumeNode, spacingMm or None)
        job = {"volumeNode": volumeNode, "result": None, "error": None, "cancelled": False}

        def work():
            try:
                from CephLandmarksLib.detect import LandmarkDetector

                key = (str(modelPath), device)
                if key not in self._detectors:
                    self._detectors = {key: LandmarkDetector(modelPath, device)}
                job["result"] = self._detectors[key].detect(radiograph)
            except Exception as e:  # reported on the main thread by takeDetectionResult
                job["error"] = e

        job["thread"] = threading.Thread(target=work, name="CephLandmarksDetection", daemon=True)
        self._job = job
        job["thread"].start()

    def cancelDetection(self) -> None:
        """The network pass cannot be interrupted; its result is dropped when it ends."""
        if self._job is not None:
            self._job["cancelled"] = True
            self._job = None

    def takeDetectionResult(self):
        """(Detection, volume node) of the finished job, or (None, None); re-raises its error."""
        job, self._job = self._job, None
        if job is None or job["cancelled"]:
            return None, None
        if job["error"] is not None:
            raise job["error"]
        return job["result"], job["volumeNode"]

    def detect(self, volumeNode, modelPath, spacingMm=0.0, device="cpu"):
        """Synchronous detection (for scripts and tests): returns the Detection."""
        self.startDetection(volumeNode, modelPath, spacingMm, device)
        self._job["thread"].join()
        return self.takeDetectionResult()[0]

    def showDetection(self, detection, volumeNode, node=None):
        """Landmarks node (new, or `node` overwritten), contour models, heatmap volume and table."""
        mrml = mrmlHelpers()
        node = mrml.createLandmarksNode(slicer.mrmlScene, detection, volumeNode, node)
        mrml.createContourModels(slicer.mrmlScene, detection, volumeNode, node)
        heatmap = mrml.createHeatmapVolume(slicer.mrmlScene, detection, volumeNode, node)
        heatmap.SetAttribute("CephLandmarks.Heatmap", "1")
        mrml.updateTable(slicer.mrmlScene, node)
        mrml.createMeasurementsTable(slicer.mrmlScene, detection, landmarksNode=node)
        return node

    # training, calibration and evaluation: the CLI in a separate process

    def cliArguments(self, command, dataset, modelPath, epochs=40, inputSize="320x416", device="auto",
                     split="test1", outFolder=""):
        python = shutil.which("PythonSlicer") or os.path.join(os.path.dirname(slicer.app.applicationFilePath()),
                                                              "PythonSlicer")
        if not dataset or not os.path.isdir(dataset):
            raise ValueError(_("Choose an existing dataset folder."))
        if not modelPath or modelPath == ".":
            raise ValueError(_("Choose a model file (.safetensors)."))
        args = [python, "-m", "CephLandmarksLib", command, "--dataset", dataset]
        if command == "train":
            return args + ["--out", modelPath, "--epochs", str(epochs), "--input-size", inputSize,
                           "--device", device]
        if not os.path.isfile(modelPath):
            raise ValueError(_("Model file not found: {p}").format(p=modelPath))
        if command == "calibrate":
            return args + ["--model", modelPath]
        if not outFolder or outFolder == ".":
            raise ValueError(_("Choose an output folder for the evaluation plots."))
        return args + ["--model", modelPath, "--split", split, "--out", outFolder,
                       "--device", "cpu" if device == "auto" else device]

    @staticmethod
    def parseProgress(line):
        """Fraction done from a training log line "epoch E/N: ... k/K", or None."""
        import re

        match = re.match(r"\s*epoch (\d+)/(\d+)(?::\s*\d+%\|[^|]*\|\s*(\d+)/(\d+))?", line)
        if not match:
            return None
        epoch, epochs = int(match.group(1)), int(match.group(2))
        within = int(match.group(3)) / max(1, int(match.group(4))) if match.group(3) else 0.0
        return min(1.0, (epoch - 1 + within) / max(1, epochs))

    @staticmethod
    def metricsSummary(folder) -> str:
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
                return slicer.util.loadVolume(str(sample), {"singleFile": True})
        yy, xx = np.mgrid[0:480, 0:384]
        pixels = 200.0 * np.exp(-(((xx - 190) / 120.0) ** 2 + ((yy - 230) / 160.0) ** 2)) + 20.0
        volume = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "synthetic radiograph")
        slicer.util.updateVolumeFromArray(volume, pixels[None].astype(np.float32))
        volume.SetSpacing(0.5, 0.5, 1.0)
        return volume

    def test_DetectOnRadiograph(self):
        self.delayDisplay("Starting the test")
        logic = CephLandmarksLogic()
        models = logic.availableModels()
        if not models:
            self.delayDisplay("No model installed (Resources/Models); skipping detection")
            return
        volume = self.sampleVolume()
        detection = logic.detect(volume, models[0][1])
        node = logic.showDetection(detection, volume)
        self.assertEqual(node.GetNumberOfControlPoints(), 19)
        mrml = mrmlHelpers()
        for row in mrml.landmarkRows(node):
            self.assertTrue(0.0 <= row["confidence"] <= 1.0)
            self.assertTrue(row["ere_mm"] >= 0.0)
            self.assertTrue(0.0 <= row["p_large_error"] <= 1.0)
            self.assertTrue(-0.5 <= row["x_px"] <= detection.image_size[0] - 0.5)
            self.assertTrue(-0.5 <= row["y_px"] <= detection.image_size[1] - 0.5)
        self.assertEqual(len(mrml.contourModels(node)), 2)
        table = node.GetNodeReference(mrml.TABLE_REFERENCE)
        self.assertEqual(table.GetTable().GetNumberOfRows(), 19)
        self.assertFalse(mrml.isEdited(node))
        self.delayDisplay("Test passed")
