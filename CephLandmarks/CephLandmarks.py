"""CephLandmarks: the 19 cephalometric landmarks on a lateral skull radiograph, with how far to trust each.

This file is the wiring only (Slicer's scripted-module template: parameter node, connectGui,
tryWithErrorDisplay; Module / Widget / Logic / Test).  The work lives beside it, imported on use:
CephLandmarksSlicer/ (one concept per file: the MRML nodes of a detection, the background process,
the Training tab's commands and results, the model list, the clinic dataset and Adapt, the
dependency list) and CephLandmarksLib/ (the library and `ceph-landmarks` CLI that every detection runs).
Loading the module and setup() import no on-demand dependency (torch, matplotlib, ...): only light
library modules over numpy and SimpleITK, which Slicer bundles.
It must stay importable by the Python 3.9 of Slicer 5.8 and older, which it then tells to upgrade.
"""

import os
import pathlib
import sys
from typing import Annotated

import qt
import slicer
import vtk
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

from CephLandmarksSlicer.detectSection import DetectSection
from CephLandmarksSlicer.landmarksSection import EDIT_DEBOUNCE_MS, LandmarksSection
from CephLandmarksSlicer.parameters import CLINIC_FOLDER_SETTING, chosenPath
from CephLandmarksSlicer.trainingSection import TrainingSection

MINIMUM_PYTHON = (3, 10)  # Slicer 5.10 and later (Python 3.12); the library does not import on 3.9
MINIMUM_SLICER = "5.10"


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
            "certain each one is: red points are flagged (expected radial error above the model's threshold, "
            "or for a model adapted to your clinic a probability of an error over 4 mm above its flag level; "
            "also points outside the image, implausibly placed or at its edge), green points are confident. "
            "The table gives each point's probability of an error over 4 mm. "
            "Contours are the 50 % and 90 % credible regions of each heatmap. Measurements follow your "
            "corrections. Needs 3D Slicer {v} or later.").format(v=MINIMUM_SLICER)
        self.parent.acknowledgementText = _(
            "Landmarks and data conventions of the ISBI 2015 Grand Challenge in cephalometric X-ray analysis.")
        if _usable():  # a JPEG's assumed spacing is marked as it loads, even if this panel is never opened
            slicer.app.connect("startupCompleted()", watchSpacingSources)
            watchSpacingSources()  # the scene exists already when the module is loaded after start-up


def watchSpacingSources():
    """Mark each radiograph's spacing source as it is loaded (CephLandmarksSlicer.spacingWatch)."""
    from CephLandmarksSlicer.spacingWatch import watchScene

    watchScene(getattr(slicer, "mrmlScene", None))


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
    useSecondStage: bool = True  # off: detect --refine none (the first stage alone)
    refinerResume: bool = False  # Train second stage continues from its checkpoint
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


class CephLandmarksWidget(ScriptedLoadableModuleWidget, VTKObservationMixin, DetectSection, LandmarksSection,
                          TrainingSection):
    """The panel: setup, connections and the parameter node here; each section's slots in CephLandmarksSlicer."""

    def __init__(self, parent=None) -> None:
        ScriptedLoadableModuleWidget.__init__(self, parent)
        VTKObservationMixin.__init__(self)
        self.logic = None
        self.ui = None
        self._parameterNode = None
        self._parameterNodeGuiTag = None
        self._observedLandmarks = None
        self._detection = None  # the running DetectionJob
        self._training = None  # (command, BackgroundProcess, start time, its output: trainingProcess, adaptProcess)
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
        self.connectAnalysisWidgets()
        self.ui.adaptClinicPathLineEdit.connect("currentPathChanged(QString)", self.onAdaptClinicPathChanged)
        self.ui.adaptButton.connect("clicked(bool)", lambda: self.onTrainingCommand("adapt"))
        self.ui.trainButton.connect("clicked(bool)", lambda: self.onTrainingCommand("train"))
        self.ui.calibrateButton.connect("clicked(bool)", lambda: self.onTrainingCommand("calibrate"))
        self.ui.evaluateButton.connect("clicked(bool)", lambda: self.onTrainingCommand("evaluate"))
        self.ui.trainRefinerButton.connect("clicked(bool)", lambda: self.onTrainingCommand("train-refiner"))
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
        from CephLandmarksSlicer.detection import isRadiographVolume

        self.setParameterNode(self.logic.getParameterNode())
        if not self._parameterNode.inputVolume:  # the first radiograph: not a heatmap or a hidden node of ours
            radiographs = [v for v in slicer.util.getNodesByClass("vtkMRMLScalarVolumeNode") if isRadiographVolume(v)]
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
        self.updateDetectButton()
        self.updateLandmarksButtons()
        self.updateTrainingButtons()

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
        failure = dependencies.installWithOneMessage(missing, slicer.util, slicer.app,
                                                     dependencies.pyTorchUtilsInstaller())
        if failure:
            slicer.util.errorDisplay(_("The Python packages could not be installed: {e}").format(e=failure))
        if failure is not None:
            return False
        stillMissing = dependencies.missingRequirements(requirements)
        if stillMissing:
            slicer.util.errorDisplay(_("Still missing after installation: {p}. Restart Slicer and try again.").format(
                p=", ".join(name for name, _line in stillMissing)))
        return not stillMissing


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
        """The model registry: shipped, imported, trained and adapted models (CephLandmarksSlicer.models)."""
        from CephLandmarksSlicer.models import modelRegistry

        return modelRegistry(slicer.app.slicerUserSettingsFilePath)

    def availableModels(self) -> list:
        return self.registry().models()

    def importModel(self, path):
        return self.registry().import_model(path)

    def registerTrainedModel(self, path):
        return self.registry().register_trained(path)

    # detection

    def prepareDetection(self, volumeNode, modelPath, spacingMm=0.0, device="cpu", refine=()):
        """A DetectionJob for the volume (written to a temporary file); call .start(...) or .run().
        refine: the `--refine` arguments (CephLandmarksSlicer.secondStage.refineArguments)."""
        from CephLandmarksSlicer.process import DetectionJob
        from CephLandmarksSlicer.volumes import radiographFromVolume

        if volumeNode is None:
            raise ValueError(_("Select an input radiograph."))
        radiograph = radiographFromVolume(volumeNode, spacingMm or None)
        return DetectionJob(radiograph, modelPath, self.pythonSlicer(), libraryFolder(), device, refine)

    def detect(self, volumeNode, modelPath, spacingMm=0.0, device="cpu"):
        """Synchronous detection (scripts and tests): the Detection; raises RuntimeError with the CLI's message."""
        detection, error, _cancelled = self.prepareDetection(volumeNode, modelPath, spacingMm, device).run()
        if error:
            raise RuntimeError(error)
        return detection

    def showDetection(self, detection, volumeNode, node=None):
        """Landmarks node (new, or `node` overwritten), contour models, heatmap volume and tables."""
        from CephLandmarksSlicer.detection import showDetection

        return showDetection(slicer.mrmlScene, detection, volumeNode, node)

    # training, calibration and evaluation

    def adaptProcess(self, baseModel, clinicFolder, onLine=None, onFinished=None):
        """(BackgroundProcess running `ceph-landmarks adapt`, the adapted model it will write): a sidecar
        <base stem>-adapted-<clinic folder>.json beside the base weights, or in the per-user model folder
        for shipped weights (CephLandmarksSlicer.adapt), never an existing file."""
        from CephLandmarksSlicer.adapt import adaptRun
        from CephLandmarksSlicer.process import cliProcess

        commandLine, output = adaptRun(self.registry().user_dir, self.pythonSlicer(), baseModel, clinicFolder)
        return cliProcess(commandLine, libraryFolder(), onLine, onFinished), output

    def trainingProcess(self, command, dataset, modelPath, epochs=40, inputSize="320x416", device="auto",
                        split="test1", outFolder=None, onLine=None, onFinished=None):
        """(BackgroundProcess running `ceph-landmarks train|calibrate|evaluate`, for calibrate the sidecar it
        writes as a CephLandmarksSlicer.commands.CalibrationOutput, else None); checks the fields first."""
        from CephLandmarksSlicer.commands import CalibrationOutput, calibrationSidecar, trainingCommand
        from CephLandmarksSlicer.process import cliProcess

        modelsDir = self.registry().user_dir
        commandLine = trainingCommand(self.pythonSlicer(), command, dataset, modelPath, epochs, inputSize, device,
                                      split, outFolder, modelsDir)
        output = CalibrationOutput(calibrationSidecar(modelPath, modelsDir)) if command == "calibrate" else None
        return cliProcess(commandLine, libraryFolder(), onLine, onFinished), output

    def refinerProcess(self, dataset, modelPath, epochs=30, resume=False, onLine=None, onFinished=None):
        """(BackgroundProcess running `ceph-landmarks train-refiner`, its secondStage.RefinerOutput): the
        refiner beside the model's weights, or in the per-user model folder for a shipped model."""
        from CephLandmarksSlicer.process import cliProcess
        from CephLandmarksSlicer.secondStage import refinerCommand

        commandLine, output = refinerCommand(self.pythonSlicer(), dataset, modelPath, self.registry().user_dir,
                                             epochs, resume)
        return cliProcess(commandLine, libraryFolder(), onLine, onFinished), output


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

    def test_DetectOnRadiograph(self):
        from CephLandmarksSlicer import selfTest

        selfTest.runDetectionTest(self, CephLandmarksLogic(), pathlib.Path(__file__).resolve().parent)
