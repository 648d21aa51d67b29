"""The Detect section of the CephLandmarks panel: the model list (with Import), Load radiograph, and
Detect, which runs in a background process (press again to cancel) and then shows the result.
"Second stage" (parameter useSecondStage) chooses its `--refine` (secondStage.refineArguments).

A mixin of CephLandmarksWidget (CephLandmarks.py): its slots use the widget's ui, logic and
parameter node, which the module file sets up and connects.  Imported when Slicer loads the
module file, so the library is imported on use only, and it parses under Python 3.9.
"""

import qt
import slicer

from .i18n import tr as _


class DetectSection:
    def updateDetectButton(self) -> None:
        from .volumes import recordSpacingSource

        recordSpacingSource(self._parameterNode.inputVolume)  # a volume dropped in and selected: before any .mrb
        busy = self._detection is not None
        self.ui.detectButton.text = _("Cancel") if busy else _("Detect landmarks")
        self.ui.detectButton.enabled = busy or bool(self._parameterNode.inputVolume)

    def updateModelList(self, select=None) -> None:
        from .models import downloadItems, modelListItems

        self.ui.modelSelector.clear()
        for label, path, tooltip in (modelListItems(self.logic.availableModels())
                                     + downloadItems(self.logic.registry())):
            self.ui.modelSelector.addItem(label, path)
            self.ui.modelSelector.setItemData(self.ui.modelSelector.count - 1, tooltip, qt.Qt.ToolTipRole)
        if self.ui.modelSelector.count == 0:
            self.ui.modelSelector.addItem(_("(no model installed: import one)"), "")
        if select:
            index = self.ui.modelSelector.findData(str(select))
            if index >= 0:
                self.ui.modelSelector.setCurrentIndex(index)

    def onImportModel(self) -> None:
        path = qt.QFileDialog.getOpenFileName(self.parent, _("Import model"), "",
                                           _("Model files and calibration sidecars (*.safetensors *.json)"))
        if path:
            with slicer.util.tryWithErrorDisplay(_("This file cannot be used as a CephLandmarks model."),
                                                 waitCursor=True):
                self.updateModelList(select=self.logic.importModel(path).path)

    def onLoadRadiograph(self) -> None:
        from .volumes import recordSpacingSource

        path = qt.QFileDialog.getOpenFileName(
            self.parent, _("Load radiograph"), "",
            _("Images (*.dcm *.png *.jpg *.jpeg *.bmp *.tif *.tiff *.nrrd *.nii *.mha);;All files (*)"))
        if path:
            with slicer.util.tryWithErrorDisplay(_("Failed to load the radiograph."), waitCursor=True):
                volume = slicer.util.loadVolume(path, {"singleFile": True})
                recordSpacingSource(volume)
                self._parameterNode.inputVolume = volume

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
            if modelPath.startswith("download:"):  # a listed model not yet downloaded (models.py)
                from .models import downloadName, startDownload

                return startDownload(self, downloadName(modelPath))
            from .secondStage import refineArguments

            volumeNode, p = self._parameterNode.inputVolume, self._parameterNode
            refine = refineArguments(modelPath, p.useSecondStage, self.logic.registry().user_dir)
            job = self.logic.prepareDetection(volumeNode, modelPath, p.spacingMm, p.device, refine)
            from .worker import viaWorker

            job = viaWorker(job)  # run by the long-lived worker process (worker.py)
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
        with slicer.util.tryWithErrorDisplay(_("The detection could not be shown.")):
            target = self.chooseTargetNode(volumeNode)  # may ask: modal dialogs never under the wait cursor
        if target is False:
            self.ui.statusLabel.text = _("The new detection was discarded; your corrections are kept.")
            return
        with slicer.util.tryWithErrorDisplay(_("The detection could not be shown."), waitCursor=True):
            node = self.logic.showDetection(detection, volumeNode, target)
            self._parameterNode.landmarks = node
            self.refreshTables()
            flagged = sum(lm.flagged for lm in detection.landmarks)
            self.ui.statusLabel.text = "\n".join(
                [_("{n} landmarks, {f} flagged for review.").format(n=len(detection.landmarks), f=flagged)]
                + [f"• {w[:1].upper()}{w[1:]}." for w in detection.warnings()])
            self.updateOverlays()
        if detection.spacing_source == "assumed":
            slicer.util.warningDisplay(_("The image has no pixel spacing; {mm:g} mm per pixel was assumed. "
                                         "Set the pixel spacing and detect again for correct millimetres.")
                                       .format(mm=detection.spacing_mm[0]))

    def chooseTargetNode(self, volumeNode):
        """Existing untouched node to overwrite, None for a new node, or False to abandon the result."""
        from .detection import nodeForRedetection
        from .markups import isEdited

        node = nodeForRedetection(self._parameterNode.landmarks, volumeNode)
        if node is None or not isEdited(node):
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
