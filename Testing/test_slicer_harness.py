"""Tests of the headless Slicer harness itself (Testing/slicer_harness): its stand-ins must be as strict
as PythonQt, and Slicer 5.12's real Python layer must run on them."""

import os
import shutil
import sys
import threading
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from slicer_harness import SHARED_SLICER, install_slicer_environment, missing_reason

ROOT = Path(__file__).resolve().parents[1]
MODULE_UI = ROOT / "CephLandmarks" / "Resources" / "UI" / "CephLandmarks.ui"
TEMPLATE = SHARED_SLICER / "Utilities" / "Templates" / "Modules" / "Scripted"

DEMO_MODULE = '''
import pathlib
from typing import Annotated

import qt
import slicer
from slicer import vtkMRMLScalarVolumeNode
from slicer.parameterNodeWrapper import Choice, WithinRange, parameterNodeWrapper
from slicer.ScriptedLoadableModule import (
    ScriptedLoadableModule,
    ScriptedLoadableModuleLogic,
    ScriptedLoadableModuleWidget,
)


class Demo(ScriptedLoadableModule):
    def __init__(self, parent):
        ScriptedLoadableModule.__init__(self, parent)
        self.parent.title = "Demo"


@parameterNodeWrapper
class DemoParameterNode:
    volume: vtkMRMLScalarVolumeNode
    spacing: Annotated[float, WithinRange(0.0, 10.0)] = 0.5
    count: Annotated[int, WithinRange(1, 100)] = 5
    device: Annotated[str, Choice(["cpu", "cuda"])] = "cpu"
    flag: bool = True
    label: str = "x"
    folder: pathlib.Path


class DemoLogic(ScriptedLoadableModuleLogic):
    def getParameterNode(self):
        return DemoParameterNode(super().getParameterNode())


class DemoWidget(ScriptedLoadableModuleWidget):
    def setup(self):
        ScriptedLoadableModuleWidget.setup(self)
        uiWidget = slicer.util.loadUI(self.resourcePath("UI/Demo.ui"))
        self.layout.addWidget(uiWidget)
        self.ui = slicer.util.childWidgetVariables(uiWidget)
        uiWidget.setMRMLScene(slicer.mrmlScene)
        self.logic = DemoLogic()
        self.ui.applyButton.connect("clicked(bool)", self.onApply)

    def enter(self):
        self.params = self.logic.getParameterNode()
        self.guiTag = self.params.connectGui(self.ui)

    def onApply(self):
        with slicer.util.tryWithErrorDisplay("Apply failed."):
            if not self.params.volume:
                raise ValueError("Select a volume.")
'''


def _property(name, value, dynamic=False):
    stdset = ' stdset="0"' if dynamic else ""
    return f'<property name="{name}"{stdset}>{value}</property>'


def _widget(cls, name, *properties):
    return f'<item><widget class="{cls}" name="{name}">{"".join(properties)}</widget></item>'


DEMO_UI = f'''<?xml version="1.0" encoding="UTF-8"?>
<ui version="4.0"><class>Demo</class>
 <widget class="qMRMLWidget" name="Demo"><layout class="QVBoxLayout" name="verticalLayout">
  <item><widget class="ctkCollapsibleButton" name="inputsCollapsibleButton">
   {_property("text", "<string>Inputs</string>")}
   <layout class="QFormLayout" name="formLayout">
    {_widget("qMRMLNodeComboBox", "volumeSelector",
             _property("nodeTypes", "<stringlist><string>vtkMRMLScalarVolumeNode</string></stringlist>"),
             _property("showChildNodeTypes", "<bool>false</bool>"), _property("noneEnabled", "<bool>true</bool>"),
             _property("SlicerParameterName", "<string>volume</string>", True))}
    {_widget("QDoubleSpinBox", "spacingSpinBox", _property("decimals", "<number>3</number>"),
             _property("SlicerParameterName", "<string>spacing</string>", True))}
    {_widget("QSpinBox", "countSpinBox", _property("SlicerParameterName", "<string>count</string>", True))}
    {_widget("QComboBox", "deviceComboBox", _property("SlicerParameterName", "<string>device</string>", True))}
    {_widget("QCheckBox", "flagCheckBox", _property("SlicerParameterName", "<string>flag</string>", True))}
    {_widget("QLineEdit", "labelLineEdit", _property("SlicerParameterName", "<string>label</string>", True))}
    {_widget("ctkPathLineEdit", "folderPathLineEdit",
             _property("filters", "<set>ctkPathLineEdit::Dirs|ctkPathLineEdit::Readable</set>"),
             _property("SlicerParameterName", "<string>folder</string>", True))}
   </layout></widget></item>
  {_widget("QPushButton", "applyButton", _property("text", "<string>Apply</string>"))}
  {_widget("QProgressBar", "progressBar", _property("visible", "<bool>false</bool>"))}
 </layout></widget>
 <connections><connection><sender>Demo</sender><signal>mrmlSceneChanged(vtkMRMLScene*)</signal>
  <receiver>volumeSelector</receiver><slot>setMRMLScene(vtkMRMLScene*)</slot></connection></connections>
</ui>
'''


@pytest.fixture
def scripted(tmp_path):
    """An installed-looking qt-scripted-modules folder: Demo.py, its .ui, and a CephLandmarksLib stand-in
    that must shadow the editable install of the real one."""
    folder = tmp_path / "qt-scripted-modules"
    (folder / "Resources" / "UI").mkdir(parents=True)
    (folder / "Demo.py").write_text(DEMO_MODULE)
    (folder / "Resources" / "UI" / "Demo.ui").write_text(DEMO_UI)
    (folder / "CephLandmarksLib").mkdir()
    (folder / "CephLandmarksLib" / "__init__.py").write_text("INSTALLED_COPY = True\n")
    return folder


@pytest.fixture
def harness(tmp_path, scripted):
    reason = missing_reason()
    if reason:
        pytest.skip(reason)
    h = install_slicer_environment(tmp_path / "harness", scripted)
    yield h
    h.teardown()


def run_python(code):
    return [sys.executable, "-c", code]


# --- signals and slots ---------------------------------------------------------------------------


def test_first_overload_rule_and_argument_count(harness):
    import qt

    process = qt.QProcess()
    got = {}
    process.finished.connect(lambda code, status: got.setdefault("two", (code, status)))  # finished(int): fails
    process.finished.connect(lambda code: got.setdefault("first", code))
    process.connect("finished(int,QProcess::ExitStatus)", lambda code, status: got.setdefault("named", (code, status)))
    process.start(sys.executable, ["-c", "import sys; sys.exit(3)"])
    harness.process_events(until=lambda: process.state() == qt.QProcess.NotRunning, timeout_s=30)
    assert got == {"first": 3, "named": (3, qt.QProcess.NormalExit)}
    assert len(harness.slot_errors) == 1 and isinstance(harness.slot_errors[0].exception, TypeError)
    assert harness.slot_errors[0].signature == "finished(int)"


def test_connect_unknown_signal_raises_and_slots_get_what_they_accept(harness):
    import qt

    button = qt.QPushButton("Go")
    with pytest.raises(ValueError, match="no signal"):
        button.connect("clicked(int)", lambda: None)
    calls = []
    button.connect("clicked(bool)", lambda: calls.append("none"))
    button.connect("clicked(bool)", lambda checked: calls.append(checked))
    button.connect("clicked()", lambda *args: calls.append(args))
    button.click()
    assert calls == ["none", False, ()]
    button.enabled = False
    button.click()  # a disabled button ignores clicks
    assert len(calls) == 3
    with pytest.raises(AttributeError):
        button.notAQtProperty  # noqa: B018 - strict attribute access
    with pytest.raises(TypeError):
        button.text = 5


def test_slot_exception_is_recorded_not_raised(harness):
    import qt

    box = qt.QCheckBox()
    box.connect("toggled(bool)", lambda on: 1 / 0)
    box.checked = True  # no exception here, as in PythonQt
    assert box.checked and [type(e.exception) for e in harness.slot_errors] == [ZeroDivisionError]


def test_qbytearray_has_no_buffer_protocol(harness):
    import qt

    data = qt.QByteArray(b"abc")
    assert data.data() == b"abc" and str(data) == "abc"
    with pytest.raises(TypeError):
        bytes(data)


# --- QProcess and timers -----------------------------------------------------------------------------


def test_qprocess_output_and_exit_code_from_the_event_loop(harness):
    import qt

    process = qt.QProcess()
    process.setProcessChannelMode(qt.QProcess.MergedChannels)
    env = qt.QProcessEnvironment.systemEnvironment()
    env.insert("HARNESS_VALUE", "hello")
    process.setProcessEnvironment(env)
    chunks, threads, finished = [], set(), []

    def onOutput():
        threads.add(threading.current_thread() is threading.main_thread())
        chunks.append(process.readAllStandardOutput().data())

    process.readyReadStandardOutput.connect(onOutput)
    process.connect("finished(int,QProcess::ExitStatus)", lambda code, status: finished.append((code, status)))
    process.start(sys.executable, ["-c", "import os, sys; print(os.environ['HARNESS_VALUE']); "
                                         "print('err', file=sys.stderr); sys.exit(0)"])
    assert process.state() == qt.QProcess.Starting and not finished  # nothing happens outside the event loop
    harness.process_events(until=lambda: finished, timeout_s=30)
    assert b"".join(chunks).split() == [b"hello", b"err"]
    assert finished == [(0, qt.QProcess.NormalExit)] and process.exitCode() == 0
    assert threads == {True} and not harness.slot_errors


def test_qprocess_kill_is_a_crash_exit(harness):
    import qt

    process = qt.QProcess()
    errors, finished = [], []
    process.errorOccurred.connect(errors.append)
    process.connect("finished(int,QProcess::ExitStatus)", lambda code, status: finished.append(status))
    process.start(sys.executable, ["-c", "import time; time.sleep(60)"])
    assert process.waitForStarted() and process.state() == qt.QProcess.Running and process.processId() > 0
    process.kill()
    harness.process_events(until=lambda: finished, timeout_s=30)
    assert finished == [qt.QProcess.CrashExit] and errors == [qt.QProcess.Crashed]


def test_qprocess_missing_program_fails_to_start(harness):
    import qt

    process = qt.QProcess()
    errors, finished = [], []
    process.errorOccurred.connect(errors.append)
    process.finished.connect(finished.append)
    process.start("no-such-program-for-the-harness", [])
    harness.process_events(timeout_s=10)
    assert errors == [qt.QProcess.FailedToStart] and finished == []
    assert process.state() == qt.QProcess.NotRunning


def test_timers_fire_in_due_order_from_the_event_loop(harness):
    import qt

    fired = []
    timers = []
    for name, msec in (("c", 60), ("a", 10), ("b", 30)):
        timer = qt.QTimer()
        timer.singleShot = True
        timer.interval = msec
        timer.timeout.connect(lambda name=name: fired.append(name))
        timer.start()
        timers.append(timer)
    repeating = qt.QTimer()
    repeating.setInterval(5)
    repeating.timeout.connect(lambda: fired.append("r") if fired.count("r") < 2 else repeating.stop())
    repeating.start()
    qt.QTimer.singleShot(40, lambda: fired.append("s"))
    assert fired == [] and timers[0].isActive()
    harness.process_events(timeout_s=10)
    assert [f for f in fired if f != "r"] == ["a", "b", "s", "c"] and fired.count("r") == 2
    assert not repeating.isActive() and not timers[0].isActive()
    waiting = qt.QTimer()
    waiting.start(10_000)
    with pytest.raises(TimeoutError, match="never"):
        harness.process_events(until=lambda: "never" == "true", timeout_s=0.05)


# --- .ui loading, MRML widgets and Slicer's parameterNodeWrapper -------------------------------------


def test_module_ui_loads_with_the_declared_classes_and_parameter_names(harness):
    import qt
    import slicer

    if not MODULE_UI.is_file():
        pytest.skip("module .ui not found")
    widget = slicer.util.loadUI(str(MODULE_UI))
    named = {w.objectName: w for w in widget.findChildren(qt.QObject)}
    named[widget.objectName] = widget
    for element in ET.parse(MODULE_UI).getroot().iter("widget"):
        obj = named[element.get("name")]
        assert type(obj).__name__ == element.get("class"), element.get("name")
        for prop in element.findall("property"):
            if prop.get("stdset") == "0":
                assert obj.property(prop.get("name")) == prop.findtext("string")
    parameters = [w.property("SlicerParameterName") for w in named.values() if w.property("SlicerParameterName")]
    assert parameters and not harness.slot_errors


def test_ui_loader_is_strict(harness, tmp_path):
    import qt
    import slicer

    for cls, prop, match in (("QPushButon", "text", "unknown class"), ("QPushButton", "txet", "no property")):
        ui = tmp_path / "bad.ui"
        ui.write_text('<ui version="4.0"><widget class="QWidget" name="w"><layout class="QVBoxLayout" name="l">'
                      f'<item><widget class="{cls}" name="b"><property name="{prop}"><string>x</string></property>'
                      '</widget></item></layout></widget></ui>')
        with pytest.raises((ValueError, AttributeError), match=match):
            slicer.util.loadUI(str(ui))
    assert isinstance(qt.QUiLoader(), qt.QObject)


def test_node_combobox_filters_child_types(harness):
    import slicer

    scene = slicer.mrmlScene
    scalar = scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "gray")
    rgb = scene.AddNewNodeByClass("vtkMRMLVectorVolumeNode", "rgb")
    hidden = scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "hidden")
    hidden.SetHideFromEditors(True)
    selector = slicer.qMRMLNodeComboBox()
    selector.nodeTypes = ["vtkMRMLScalarVolumeNode"]
    selector.showChildNodeTypes = False
    selector.noneEnabled = True
    assert not selector.enabled  # until it has a scene
    selector.setMRMLScene(scene)
    assert selector.enabled and [n.GetName() for n in selector.nodes()] == ["gray"]
    changes = []
    selector.currentNodeChanged.connect(changes.append)
    selector.setCurrentNode(rgb)  # an RGB image cannot be selected with showChildNodeTypes false
    assert selector.currentNode() is None and changes == []
    selector.setCurrentNode(scalar)
    assert selector.currentNodeID == scalar.GetID() and changes == [scalar]
    selector.showChildNodeTypes = True
    selector.setCurrentNode(rgb)
    assert [n.GetName() for n in selector.nodes()] == ["gray", "rgb"] and selector.currentNode() is rgb
    selector.hideChildNodeTypes = ["vtkMRMLVectorVolumeNode"]
    assert selector.currentNode() is scalar  # the current node left the list: its neighbour is current


def test_parameter_node_wrapper_round_trips_through_the_loaded_ui(harness, scripted):
    import qt
    import slicer

    widget = harness.create_widget("Demo")
    ui, params = widget.ui, widget.params
    assert slicer.modules.demo.path == str(scripted / "Demo.py") and slicer.modules.DemoWidget is widget
    assert slicer.modules.demo.widgetRepresentation().isEntered
    assert (ui.spacingSpinBox.value, ui.countSpinBox.value, ui.deviceComboBox.currentText) == (0.5, 5, "cpu")
    assert ui.spacingSpinBox.maximum == 10.0 and ui.progressBar.visible is False
    ui.spacingSpinBox.value = 2.3456  # rounded to the .ui's 3 decimals
    ui.countSpinBox.value = 500  # clamped to WithinRange(1, 100)
    ui.deviceComboBox.currentIndex = 1
    ui.flagCheckBox.checked = False
    ui.labelLineEdit.text = "typed"
    ui.folderPathLineEdit.currentPath = str(scripted)
    assert (params.spacing, params.count, params.device, params.flag, params.label, params.folder) == \
        (2.346, 100, "cuda", False, "typed", scripted)
    params.spacing, params.device, params.label, params.folder = 7.0, "cpu", "set", Path("/tmp")
    assert (ui.spacingSpinBox.value, ui.deviceComboBox.currentIndex, ui.labelLineEdit.text) == (7.0, 0, "set")
    assert ui.folderPathLineEdit.currentPath == "/tmp"
    volume = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "v")
    ui.volumeSelector.setCurrentNode(volume)
    assert params.volume is volume
    params.volume = None
    assert ui.volumeSelector.currentNode() is None
    ui.applyButton.click()  # tryWithErrorDisplay: an error box, and the re-raised error printed by "PythonQt"
    assert [(b["kind"], b["text"]) for b in harness.message_boxes] == [("error", "Apply failed.\n\nSelect a volume.")]
    assert [type(e.exception) for e in harness.slot_errors] == [ValueError]
    assert harness.override_cursor_depth == 0 and isinstance(ui.applyButton, qt.QPushButton)


# --- message boxes and file dialogs --------------------------------------------------------------------


def test_message_boxes_are_recorded_and_answered(harness):
    import qt
    import slicer

    harness.queue_answer(qt.QMessageBox.Cancel)
    assert slicer.util.confirmOkCancelDisplay("Install?") is False
    assert slicer.util.confirmOkCancelDisplay("Install again?") is True  # default: OK
    slicer.util.warningDisplay("Careful")
    box = qt.QMessageBox(qt.QMessageBox.Question, "Corrected", "Keep?", qt.QMessageBox.NoButton, None)
    keep = box.addButton("New node", qt.QMessageBox.AcceptRole)
    overwrite = box.addButton("Overwrite", qt.QMessageBox.DestructiveRole)
    box.addButton(qt.QMessageBox.Cancel)
    box.setDefaultButton(keep)
    box.exec_()
    assert box.clickedButton() is keep
    harness.queue_answer("Overwrite")
    box.exec_()
    assert box.clickedButton() is overwrite
    harness.queue_answer("No such button")
    with pytest.raises(ValueError):
        box.exec_()
    assert [(b["kind"], b["text"], b["answer"]) for b in harness.message_boxes[:5]] == [
        ("question", "Install?", "Cancel"), ("question", "Install again?", "OK"), ("warning", "Careful", "OK"),
        ("question", "Keep?", "New node"), ("question", "Keep?", "Overwrite")]
    harness.app.setTestingEnabled(True)  # Slicer's testing mode: util logs instead of showing
    slicer.util.errorDisplay("logged only")
    assert len(harness.message_boxes) == 6


def test_file_dialogs_answer_from_the_queue(harness):
    import qt

    harness.queue_file_dialog("/data/image.png", "")
    assert qt.QFileDialog.getOpenFileName(None, "Load", "", "Images (*.png)") == "/data/image.png"
    assert qt.QFileDialog.getExistingDirectory(None, "Save to") == ""
    with pytest.raises(RuntimeError, match="no answer is queued"):
        qt.QFileDialog.getSaveFileName(None, "Export", "a.csv", "CSV (*.csv)")
    assert [d["kind"] for d in harness.file_dialogs] == ["getOpenFileName", "getExistingDirectory", "getSaveFileName"]


# --- environment: installed copies, PythonSlicer, isolation -------------------------------------------


def test_installed_copy_wins_and_python_slicer_runs_it(harness, scripted):
    import qt
    import slicer

    harness.load_module("Demo")
    import CephLandmarksLib

    assert CephLandmarksLib.INSTALLED_COPY and Path(CephLandmarksLib.__file__).parent == scripted / "CephLandmarksLib"
    assert Path(shutil.which("PythonSlicer")) == harness.python_slicer
    assert (Path(slicer.app.applicationFilePath()).parent / "PythonSlicer") == harness.python_slicer
    assert Path(slicer.util.__file__).is_relative_to(SHARED_SLICER) and slicer.util.mainWindow() is not None
    process = qt.QProcess()
    process.start("PythonSlicer", ["-c", "import CephLandmarksLib; print(CephLandmarksLib.__file__)"])
    assert process.waitForFinished(30000) and process.exitCode() == 0
    assert Path(process.readAllStandardOutput().data().decode().strip()).parent == scripted / "CephLandmarksLib"


def test_teardown_restores_the_session(tmp_path, scripted):
    reason = missing_reason()
    if reason:
        pytest.skip(reason)
    import slicer

    before_util, before_path, before_lib = slicer.util, list(sys.path), sys.modules.get("CephLandmarksLib")
    with install_slicer_environment(tmp_path / "h", scripted) as h:
        h.load_module("Demo")
        assert sys.modules["qt"].__name__ == "slicer_harness.qt" and slicer.app is h.app
    assert "qt" not in sys.modules and "Demo" not in sys.modules and not hasattr(slicer, "app")
    assert slicer.util is before_util and sys.path == before_path
    assert sys.modules.get("CephLandmarksLib") is before_lib


def test_imports_leave_no_bytecode_in_the_installed_folder(tmp_path, scripted, monkeypatch):
    """The installed folder is shared and checked file by file (test_extension_build.py): neither this
    process nor PythonSlicer may write __pycache__ into it, even where bytecode writing is on."""
    reason = missing_reason()
    if reason:
        pytest.skip(reason)
    monkeypatch.setattr(sys, "dont_write_bytecode", False)
    monkeypatch.delenv("PYTHONDONTWRITEBYTECODE", raising=False)
    with install_slicer_environment(tmp_path / "h", scripted) as h:
        import qt

        h.load_module("Demo")
        import CephLandmarksLib  # noqa: F401 - the installed stand-in, imported in this process

        process = qt.QProcess()
        process.start("PythonSlicer", ["-c", "import CephLandmarksLib"])
        assert process.waitForFinished(30000) and process.exitCode() == 0
    assert not list(scripted.rglob("__pycache__"))
    assert sys.dont_write_bytecode is False and "PYTHONDONTWRITEBYTECODE" not in os.environ


def test_slicer_template_module_runs(tmp_path):
    """Slicer's own scripted-module template, unchanged, on the harness."""
    reason = missing_reason()
    if reason or not (TEMPLATE / "TemplateKey.py").is_file():
        pytest.skip(reason or "template not found")
    with install_slicer_environment(tmp_path / "h", TEMPLATE) as h:
        import slicer

        widget = h.create_widget("TemplateKey")
        volume = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "input")
        assert widget.ui.inputSelector.currentNode() is volume and widget._parameterNode.inputVolume is volume
        widget.ui.imageThresholdSliderWidget.value = 42
        assert widget._parameterNode.imageThreshold == 42 and not widget.ui.applyButton.enabled
        assert not h.slot_errors and not h.message_boxes


def test_load_volume_reads_with_the_real_volumes_logic(harness, tmp_path):
    import numpy as np
    import qt
    import slicer

    sitk = pytest.importorskip("SimpleITK")
    rgb = tmp_path / "rgb.nrrd"
    sitk.WriteImage(sitk.GetImageFromArray(np.zeros((1, 20, 30, 3), np.uint8), isVector=True), str(rgb))
    node = slicer.util.loadVolume(str(rgb), {"singleFile": True})
    assert node.GetClassName() == "vtkMRMLVectorVolumeNode"  # as Slicer loads an RGB image
    composite = slicer.mrmlScene.GetNthNodeByClass(0, "vtkMRMLSliceCompositeNode")
    assert composite.GetBackgroundVolumeID() == node.GetID()  # shown, as with "show" (default) in Slicer
    jpeg = tmp_path / "image.jpg"
    jpeg.write_bytes(b"not really a jpeg")
    with pytest.raises(RuntimeError, match="Failed to load node"):
        slicer.util.loadVolume(str(jpeg))
    combo = qt.QComboBox()
    combo.addItem("model", "/path/model.safetensors")
    combo.setItemData(0, "a tooltip", qt.Qt.ToolTipRole)
    assert (combo.currentData, combo.itemData(0, qt.Qt.ToolTipRole), combo.findData("/path/model.safetensors")) == \
        ("/path/model.safetensors", "a tooltip", 0)
