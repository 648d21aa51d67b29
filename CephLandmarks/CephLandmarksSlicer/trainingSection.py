"""The Training section of the CephLandmarks panel (researchers): Train, Calibrate temperatures,
Evaluate, Adapt to clinic and Train second stage, each the `ceph-landmarks` CLI in a background
process (press again to cancel) with its output in the log; then the new model registered and
selected, the second stage's file named, or the evaluation plots and metrics shown.

A mixin of CephLandmarksWidget (CephLandmarks.py): its slots use the widget's ui, logic and
parameter node, which the module file sets up and connects.  Imported when Slicer loads the
module file, so the library is imported on use only, and it parses under Python 3.9.
"""

import pathlib
import time

import qt
import slicer

from .i18n import tr as _
from .parameters import CLINIC_FOLDER_SETTING, chosenPath


def _showPath(field, path) -> None:
    """Show path in a ctkPathLineEdit without telling the parameter node."""
    wasBlocked = field.blockSignals(True)
    field.currentPath = path
    field.blockSignals(wasBlocked)


class TrainingSection:
    def updateTrainingButtons(self) -> None:
        """Buttons of the running command (Cancel) and the others (disabled); the clinic folder shown and remembered."""
        running = self._training[0] if self._training else None
        for button, command, label in ((self.ui.trainButton, "train", _("Train")),
                                       (self.ui.calibrateButton, "calibrate", _("Calibrate temperatures")),
                                       (self.ui.evaluateButton, "evaluate", _("Evaluate")),
                                       (self.ui.adaptButton, "adapt", _("Adapt to clinic")),
                                       (self.ui.trainRefinerButton, "train-refiner", _("Train second stage"))):
            button.enabled = running in (None, command)
            button.text = _("Cancel") if running == command else label
        clinicFolder = chosenPath(self._parameterNode.clinicFolder) or ""
        if self.ui.adaptClinicPathLineEdit.currentPath != clinicFolder:  # the Training tab's view of it
            _showPath(self.ui.adaptClinicPathLineEdit, clinicFolder)
        # An unset path parameter reads Path("."), which connectGui shows as ".": show it empty (this observer
        # runs after connectGui's, on every change of the parameter node).
        for name, field in (("datasetFolder", self.ui.datasetPathLineEdit),
                            ("trainModelPath", self.ui.trainModelPathLineEdit),
                            ("evaluateFolder", self.ui.evaluateOutputPathLineEdit),
                            ("clinicFolder", self.ui.clinicFolderPathLineEdit)):
            if field.currentPath and chosenPath(getattr(self._parameterNode, name)) is None:
                _showPath(field, "")
        if clinicFolder:
            slicer.app.userSettings().setValue(CLINIC_FOLDER_SETTING, clinicFolder)

    def onTrainingCommand(self, command) -> None:
        if self._training is not None:
            self._training[1].kill()  # the Cancel button
            return
        if not self.ensureDependencies():
            return
        from .process import displayCommand

        p = self._parameterNode
        with slicer.util.tryWithErrorDisplay(_("Cannot start {c}.").format(c=command)):
            onFinished = lambda code, crashed: self.onProcessFinished(command, code, crashed)  # noqa: E731
            if command == "adapt":
                process, output = self.logic.adaptProcess(self.ui.modelSelector.currentData,
                                                          chosenPath(p.clinicFolder), self.onProcessLine, onFinished)
            elif command == "train-refiner":  # behind the model of the model list, as Adapt
                process, output = self.logic.refinerProcess(chosenPath(p.datasetFolder),
                                                            self.ui.modelSelector.currentData, p.epochs,
                                                            p.refinerResume, self.onProcessLine, onFinished)
            else:
                process, output = self.logic.trainingProcess(
                    command, chosenPath(p.datasetFolder), chosenPath(p.trainModelPath), p.epochs, p.inputSize,
                    p.trainDevice, p.evaluateSplit, chosenPath(p.evaluateFolder), self.onProcessLine,
                    onFinished)
            self._training = (command, process, time.time(), output)
            self._trainingLines = []
            self.ui.trainLogTextEdit.appendPlainText("$ " + displayCommand(process.commandLine))
            self.ui.trainProgressBar.setRange(0, 0)
            process.start()
            self.updateGUIFromParameterNode()

    def onProcessLine(self, line) -> None:
        from .process import progressFromLine

        self._trainingLines.append(line)
        refiner = self._training[3] if self._training and self._training[0] == "train-refiner" else None
        progress = refiner.fraction(line) if refiner else progressFromLine(line)  # train-refiner: epoch records
        if progress is not None:
            self.ui.trainProgressBar.setRange(0, 1000)
            self.ui.trainProgressBar.setValue(int(progress * 1000))
        if progressFromLine(line) is None:  # all but `[progress]` lines (an epoch's record stays in the log)
            self.ui.trainLogTextEdit.appendPlainText(line)

    def onAdaptClinicPathChanged(self, path) -> None:
        if self._parameterNode:
            self._parameterNode.clinicFolder = pathlib.Path(path) if path else pathlib.Path(".")

    def onProcessFinished(self, command, exitCode, crashed) -> None:
        from . import adapt
        from .process import failureMessage

        started, output = (self._training[2], self._training[3]) if self._training else (0.0, None)
        self._training = None
        if output and (crashed or exitCode != 0):  # cancelled or failed: no partial model is left
            if command == "adapt":
                adapt.removeLeftovers(output)
            elif command == "calibrate":
                output.restore()  # the sidecar as it was before the run
            elif command == "train-refiner":  # no half-written refiner; the checkpoints stay for Resume
                output.removeLeftovers()
                if (output.workFolder / "last.pt").is_file():
                    self.ui.trainLogTextEdit.appendPlainText(_("Checkpoints kept in {p}: tick Resume to continue."
                                                               ).format(p=output.workFolder))
        self.ui.trainProgressBar.setRange(0, 1)
        self.ui.trainProgressBar.setValue(1 if exitCode == 0 else 0)
        self.ui.trainLogTextEdit.appendPlainText(
            _("{c} cancelled.").format(c=command) if crashed else
            _("{c} finished (exit code {e}).").format(c=command, e=exitCode))
        if exitCode != 0 and not crashed:
            slicer.util.errorDisplay(_("{c} failed: {e}").format(
                c=command.capitalize(), e=failureMessage(exitCode, crashed, self._trainingLines)))
        if exitCode == 0 and not crashed:
            with slicer.util.tryWithErrorDisplay(_("The results of {c} could not be shown.").format(c=command)):
                if command == "train":
                    modelPath = chosenPath(self._parameterNode.trainModelPath)
                    self.logic.registerTrainedModel(modelPath)
                    self.updateModelList(select=modelPath)
                if command == "calibrate":  # a sidecar: listed, selected, and what Evaluate reads next
                    entry = self.logic.registerTrainedModel(output.path)
                    self._parameterNode.trainModelPath = pathlib.Path(entry.path)
                    self.updateModelList(select=entry.path)
                    self.ui.trainLogTextEdit.appendPlainText(
                        _("Calibration written to {s} (weights {w} unchanged).").format(s=entry.path, w=entry.weights))
                if command == "adapt":
                    entry = self.logic.registerTrainedModel(output)
                    self.updateModelList(select=entry.path)
                    self.ui.trainLogTextEdit.appendPlainText(
                        adapt.adaptationSummary(entry.info, entry.path) or _("Adapted model: {p}").format(p=output))
                    report = adapt.reportFolder(output)
                    if report.is_dir():
                        self.ui.trainLogTextEdit.appendPlainText(_("Adaptation report: {p}").format(p=report))
                if command == "train-refiner":
                    self.ui.trainLogTextEdit.appendPlainText(
                        _("Second stage written to {p}; Detect uses it with this model when Second stage is on.")
                        .format(p=output.path))
                if command == "evaluate":
                    self.showPlots(chosenPath(self._parameterNode.evaluateFolder), started)
        self.updateGUIFromParameterNode()

    def showPlots(self, folder, writtenSince) -> None:
        """The PNG plots of `folder` written by this run (not older ones), and the metrics summary."""
        from .metrics import metricsSummary, plotsWrittenSince

        self.ui.plotListWidget.clear()
        for png in plotsWrittenSince(folder, writtenSince):
            self.ui.plotListWidget.addItem(png)
        self.ui.metricsLabel.text = metricsSummary(folder)
        if self.ui.plotListWidget.count:
            self.ui.plotListWidget.setCurrentRow(0)

    def onPlotSelected(self, path) -> None:
        self.ui.plotLabel.setPixmap(qt.QPixmap(path).scaledToWidth(max(200, self.ui.plotLabel.width)))

    def onSavePlots(self) -> None:
        from .metrics import copyResults

        folder = qt.QFileDialog.getExistingDirectory(self.parent, _("Save plots to"))
        if folder:
            with slicer.util.tryWithErrorDisplay(_("Could not save the plots.")):
                plots = [self.ui.plotListWidget.item(i).text() for i in range(self.ui.plotListWidget.count)]
                copyResults(plots, chosenPath(self._parameterNode.evaluateFolder) or ".", folder)
