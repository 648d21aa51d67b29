"""The Landmarks and Measurements sections of the CephLandmarks panel: the tables, the chosen named
analysis and its lines follow the user's corrections (recomputed once after a burst of point edits),
a table row jumps to its point, Mark reviewed, the contour and heatmap overlays, the exports and the
report, and Add to clinic dataset.

A mixin of CephLandmarksWidget (CephLandmarks.py): its slots use the widget's ui, logic and
parameter node, which the module file sets up and connects.  Imported when Slicer loads the
module file, so the library is imported on use only, and it parses under Python 3.9.
"""

import qt
import slicer
from slicer import vtkMRMLMarkupsFiducialNode

from .i18n import tr as _
from .parameters import chosenPath

EDIT_DEBOUNCE_MS = 300  # tables and measurements are recomputed once after a burst of point edits


class LandmarksSection:
    _syncingAnalysis = False  # the selector is being set from the node: not a user's choice

    def updateLandmarksButtons(self) -> None:
        """Result buttons enabled with a detection; its node observed for edits."""
        landmarks = self._parameterNode.landmarks
        hasResult = bool(landmarks and landmarks.GetAttribute("CephLandmarks.Detection"))  # no library import here
        for button in (self.ui.markReviewedButton, self.ui.exportMarkupsButton, self.ui.exportCsvButton,
                       self.ui.exportJsonButton, self.ui.exportReportButton, self.ui.addToClinicButton):
            button.enabled = hasResult
        if landmarks is not self._observedLandmarks:
            self.observeLandmarks(landmarks if hasResult else None)

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
            self.ui.analysisTableView.setMRMLTableNode(None)
            return
        from .detection import refreshAfterEdits

        table, measurements = refreshAfterEdits(slicer.mrmlScene, node)
        self.ui.landmarksTable.setMRMLTableNode(table)
        self.ui.measurementsTableView.setMRMLTableNode(measurements)
        self.refreshAnalysis(node)

    def connectAnalysisWidgets(self) -> None:
        """Fill the analysis selector (the default set first) and recompute on any change of the choice."""
        from .analysisTable import analysisChoices

        for key, name in analysisChoices():
            self.ui.analysisSelector.addItem(name, key)
        for widget, signal in ((self.ui.analysisSelector, "currentIndexChanged(int)"),
                               (self.ui.analysisHorizontalComboBox, "currentIndexChanged(int)"),
                               (self.ui.patientAgeSpinBox, "valueChanged(double)"),
                               (self.ui.patientSexComboBox, "currentIndexChanged(int)"),
                               (self.ui.analysisNormsPathLineEdit, "currentPathChanged(QString)")):
            widget.connect(signal, self.onAnalysisChanged)

    def onAnalysisChanged(self, _unused=None) -> None:
        """Keep the panel's choice on the landmarks node and show it; a bad norms file: a message box."""
        node = self._observedLandmarks
        if node is None or node.GetScene() is None or self._syncingAnalysis:
            return
        from CephLandmarksLib.errors import CephError

        from .analysisTable import chooseAnalysis

        sex = self.ui.patientSexComboBox.currentText
        try:
            chooseAnalysis(node, self.ui.analysisSelector.currentData,
                           norms=self.ui.analysisNormsPathLineEdit.currentPath,
                           horizontal=self.ui.analysisHorizontalComboBox.currentText,
                           ageYears=self.ui.patientAgeSpinBox.value or None,
                           sex=sex if sex in ("male", "female") else None)
        except CephError as e:
            slicer.util.errorDisplay(str(e))
            return
        self.refreshAnalysis(node)

    def refreshAnalysis(self, node) -> None:
        """The node's chosen analysis: the selector, its table and its lines in the slice views."""
        from .analysisLines import updateAnalysisLines
        from .analysisTable import chosenAnalysis, updateAnalysisTable

        self._syncingAnalysis = True
        try:
            self.ui.analysisSelector.setCurrentIndex(self.ui.analysisSelector.findData(chosenAnalysis(node)))
        finally:
            self._syncingAnalysis = False
        table, entry = updateAnalysisTable(slicer.mrmlScene, node)
        self.ui.analysisTableView.setMRMLTableNode(table)
        if entry is not None:
            updateAnalysisLines(slicer.mrmlScene, node, [entry])

    def onTableClicked(self, index) -> None:
        node, table = self._observedLandmarks, self.ui.landmarksTable.mrmlTableNode()
        if node is None or table is None:
            return
        from .markups import controlPointIndex
        from .tables import tableRowLandmarkIndex

        pointIndex = controlPointIndex(node, tableRowLandmarkIndex(table, index.row()))
        if pointIndex >= 0:
            slicer.modules.markups.logic().JumpSlicesToNthPointInMarkup(node.GetID(), pointIndex, True)

    def onMarkReviewed(self) -> None:
        node, table = self._observedLandmarks, self.ui.landmarksTable.mrmlTableNode()
        rows = sorted({index.row() for index in self.ui.landmarksTable.selectionModel().selectedIndexes()})
        if not rows:
            slicer.util.errorDisplay(_("Select one or more rows of the landmark table first."))
            return
        from .markups import setReviewed
        from .tables import tableRowLandmarkIndex

        for landmarkIndex in [tableRowLandmarkIndex(table, row) for row in rows]:
            setReviewed(node, landmarkIndex)
        self.refreshTables()

    def updateOverlays(self, _unused=None) -> None:
        from .contours import setContoursVisible
        from .heatmap import sliceLayers
        from .record import isLandmarksNode

        node = self._parameterNode.landmarks if self._parameterNode else None
        if not (node and isLandmarksNode(node)):
            return
        setContoursVisible(node, self._parameterNode.showContours)
        volume, heatmap = sliceLayers(node, self._parameterNode.showHeatmap)
        slicer.util.setSliceViewerLayers(background=volume, foreground=heatmap,
                                         foregroundOpacity=0.5 if heatmap is not None else 0.0)

    def onExport(self, kind) -> None:
        node = self._parameterNode.landmarks
        filters = {"mrk.json": _("Markups (*.mrk.json)"), "csv": _("CSV (*.csv)"), "json": _("CLI JSON (*.json)")}
        path = qt.QFileDialog.getSaveFileName(self.parent, _("Export landmarks"), f"{node.GetName()}.{kind}",
                                              filters[kind])
        if path:
            with slicer.util.tryWithErrorDisplay(_("Export failed."), waitCursor=True):
                from .exports import exportLandmarks

                exportLandmarks(node, kind, path)

    def onExportReport(self) -> None:
        node = self._parameterNode.landmarks
        folder = qt.QFileDialog.getExistingDirectory(self.parent, _("Save the report (PDF and PNG) to"))
        if folder and self.ensureDependencies():
            with slicer.util.tryWithErrorDisplay(_("The report could not be written."), waitCursor=True):
                from .exports import exportReport

                written = exportReport(node, outDir=folder)
                self.ui.statusLabel.text = _("Report written: {p}").format(p=", ".join(str(p) for p in written))

    def onAddToClinic(self) -> None:
        """The reviewed radiograph and its current points into the clinic dataset folder (whole or nothing)."""
        from CephLandmarksLib.annotations.clinic_dataset import DuplicateCase

        from . import clinic

        node, folder = self._parameterNode.landmarks, chosenPath(self._parameterNode.clinicFolder)
        with slicer.util.tryWithErrorDisplay(_("The radiograph was not added to the clinic dataset."),
                                             waitCursor=True):
            if not folder:
                raise ValueError(_("Choose the clinic dataset folder first (Clinic dataset)."))
            clinic.clinicCase(node)  # missing points, unknown spacing, wrong volume: refused before asking
            unreviewed = clinic.unreviewedFlagged(node)
            if unreviewed and not slicer.util.confirmYesNoDisplay(
                    _("{n} flagged points were neither reviewed nor corrected: {p}. Add this detection to the "
                      "clinic dataset anyway?").format(n=len(unreviewed), p=", ".join(unreviewed)),
                    windowTitle=_("Unreviewed flagged points")):
                self.ui.statusLabel.text = _("Not added: review the flagged points first.")
                return
            try:
                added = clinic.addToClinicDataset(node, folder)
            except DuplicateCase as duplicate:
                if not slicer.util.confirmYesNoDisplay(
                        _("This radiograph is already in the clinic dataset as {i}. Replace its landmarks with "
                          "the ones shown now?").format(i=duplicate.image),
                        windowTitle=_("Already in the clinic dataset")):
                    self.ui.statusLabel.text = _("Not added: the radiograph is already in the clinic dataset.")
                    return
                added = clinic.addToClinicDataset(node, folder, replace=True)
            self.ui.statusLabel.text = _("{what} {i} in the clinic dataset {f} ({n} radiographs).").format(
                what=_("Replaced") if added.replaced else _("Added"), i=added.image_path.name, f=folder,
                n=added.n_images)
