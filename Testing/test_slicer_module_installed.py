"""The Slicer module as a user gets it: built and installed by CMake with Slicer 5.12's own macros,
imported from the installed qt-scripted-modules folder (the source tree off sys.path), and driven on
Slicer 5.12's real Python layer (ScriptedLoadableModule, parameterNodeWrapper, slicer.util) over
slicer-core's MRML, with the strict qt/ctk stand-ins of Testing/slicer_harness.

Skips when ../shared/slicer-5.12, slicer-core or cmake is missing (CI has all three)."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from slicer_harness import build, install_slicer_environment, missing_reason
from slicer_harness.process import descendant_pids, pid_running

ROOT = Path(__file__).resolve().parent.parent
ON_DEMAND = ("torch", "torchvision", "safetensors", "tqdm", "matplotlib", "contourpy")

pytestmark = pytest.mark.skipif(bool(missing_reason() or build.skip_reason()),
                                reason=str(missing_reason() or build.skip_reason()))


# The fixtures installed, harness and widget live in conftest.py (shared with the other module tests).


def skull(width=384, height=480):
    """A smooth synthetic 'radiograph' (no anatomy: detection runs, its points mean nothing)."""
    yy, xx = np.mgrid[0:height, 0:width]
    return (200.0 * np.exp(-(((xx - 190) / 120.0) ** 2 + ((yy - 230) / 160.0) ** 2)) + 20.0).astype(np.float32)


def writeNrrd(path, pixels, spacing=(0.5, 0.5)):
    import SimpleITK as sitk

    image = sitk.GetImageFromArray(pixels)
    image.SetSpacing(spacing)
    sitk.WriteImage(image, str(path))
    return path


def loadRadiograph(harness, widget, path):
    harness.queue_file_dialog(str(path))
    widget.ui.loadRadiographButton.click()
    volume = widget._parameterNode.inputVolume
    assert volume is not None and harness.message_boxes == []
    return volume


def nodeCounts(scene):
    return {c: scene.GetNumberOfNodesByClass(c) for c in
            ("vtkMRMLMarkupsFiducialNode", "vtkMRMLModelNode", "vtkMRMLScalarVolumeNode", "vtkMRMLTableNode")}


def detectAndWait(harness, widget, timeout_s=180):
    widget.ui.detectButton.click()
    assert widget.ui.detectButton.text == "Cancel"
    harness.process_events(until=lambda: widget._detection is None, timeout_s=timeout_s)


def test_module_loads_and_sets_up_without_torch(harness, monkeypatch):
    """A fresh install: nothing on demand is importable, yet the panel and the model list are complete."""
    for name in ON_DEMAND:
        monkeypatch.setitem(sys.modules, name, None)
    module = harness.load_module("CephLandmarks")
    assert Path(module.__file__).parent == harness.scripted_modules_dir
    widget = harness.create_widget("CephLandmarks")
    assert harness.slot_errors == [] and harness.message_boxes == []
    labels = [widget.ui.modelSelector.itemText(i) for i in range(widget.ui.modelSelector.count)]
    assert any("isbi2015-384x480" in label for label in labels), labels
    assert widget.ui.modelSelector.currentData.endswith(".safetensors")
    assert widget.ui.detectButton.text == "Detect landmarks"
    assert not [m for m in ON_DEMAND if sys.modules.get(m) is not None]


def test_library_and_helpers_come_from_the_installed_folder(harness, installed):
    module = harness.load_module("CephLandmarks")
    import CephLandmarksLib
    import CephLandmarksSlicer

    for imported in (module, CephLandmarksLib, CephLandmarksSlicer):
        assert Path(imported.__file__).resolve().is_relative_to(Path(installed).resolve()), imported.__file__
    assert [p.name for p in Path(installed).glob("*.py")] == ["CephLandmarks.py"]


def test_detect_creates_the_nodes_and_matches_the_cli(harness, widget, tmp_path):
    image = writeNrrd(tmp_path / "skull.nrrd", skull())
    volume = loadRadiograph(harness, widget, image)
    detectAndWait(harness, widget)
    assert harness.slot_errors == []
    assert [b["kind"] for b in harness.message_boxes] == [], harness.message_boxes
    node = widget._parameterNode.landmarks
    assert node is not None and node.GetNumberOfControlPoints() == 19
    record = sys.modules["CephLandmarksSlicer.record"]
    assert len(sys.modules["CephLandmarksSlicer.contours"].contourModels(node)) == 2
    assert node.GetNodeReference(record.HEATMAP_REFERENCE) is not None
    assert node.GetNodeReference(record.TABLE_REFERENCE).GetTable().GetNumberOfRows() == 19
    assert node.GetNodeReference(record.MEASUREMENTS_REFERENCE) is not None
    assert widget.ui.landmarksTable.mrmlTableNode() is node.GetNodeReference(record.TABLE_REFERENCE)
    assert widget.ui.detectButton.text == "Detect landmarks" and "landmarks" in widget.ui.statusLabel.text
    # The same pixels through the command line give the same points.
    out = tmp_path / "cli"
    model = widget.ui.modelSelector.currentData
    r = subprocess.run([sys.executable, "-m", "CephLandmarksLib", "detect", str(image), "--model", model,
                        "--out-dir", str(out), "--no-overlay"], capture_output=True, text=True, cwd=tmp_path,
                       env=harness.cli_environment())
    assert r.returncode == 0, r.stderr[-800:]
    cli = {lm["abbreviation"]: lm for lm in json.loads((out / "skull.json").read_text())["landmarks"]}
    rows = {row["abbreviation"]: row for row in sys.modules["CephLandmarksSlicer.markups"].landmarkRows(node)}
    for abbreviation, lm in cli.items():
        if lm.get("missing"):
            assert not rows[abbreviation]["present"]
            continue
        assert rows[abbreviation]["x_px"] == pytest.approx(lm["x_px"], abs=2e-3)
        assert rows[abbreviation]["y_px"] == pytest.approx(lm["y_px"], abs=2e-3)
        assert rows[abbreviation]["flagged"] == lm["flagged"]
    assert volume.GetID() == node.GetNodeReferenceID(record.VOLUME_REFERENCE)


def test_cancel_kills_the_process_and_leaves_nothing(harness, widget, tmp_path):
    loadRadiograph(harness, widget, writeNrrd(tmp_path / "skull.nrrd", skull()))
    before = nodeCounts(harness.scene)
    widget.ui.detectButton.click()
    job = widget._detection
    assert job is not None and job.folder.is_dir() and job.running
    launcher = job._process._process.processId()
    harness.process_events(until=lambda: descendant_pids(launcher), timeout_s=30)
    python = descendant_pids(launcher)  # PythonSlicer is a launcher: Python is its child
    widget.ui.detectButton.click()  # Cancel
    harness.process_events(until=lambda: widget._detection is None, timeout_s=30)
    assert not job.folder.exists()
    assert [pid for pid in python if pid_running(pid)] == []
    assert nodeCounts(harness.scene) == before
    assert widget.ui.statusLabel.text == "Cancelled." and widget.ui.detectButton.text == "Detect landmarks"
    assert harness.message_boxes == [] and harness.slot_errors == []


def test_a_damaged_model_gives_one_message(harness, widget, tmp_path):
    """The process fails (the weights' checksum): one message box carrying the CLI's own reason."""
    damaged = tmp_path / "damaged.safetensors"
    shutil.copyfile(widget.ui.modelSelector.currentData, damaged)
    with open(damaged, "r+b") as f:
        f.seek(-1000, 2)
        f.write(b"\x00" * 16)
    widget.logic.registerTrainedModel(str(damaged))
    widget.updateModelList(select=damaged)
    loadRadiograph(harness, widget, writeNrrd(tmp_path / "skull.nrrd", skull()))
    before = nodeCounts(harness.scene)
    detectAndWait(harness, widget, timeout_s=60)
    assert [b["kind"] for b in harness.message_boxes] == ["error"]
    text = harness.message_boxes[0]["text"]
    assert "damaged" in text and "Traceback" not in text and len(text.splitlines()) == 1
    assert nodeCounts(harness.scene) == before and harness.slot_errors == []


def test_a_volume_that_is_not_a_radiograph_gives_one_message(harness, widget):
    import slicer

    volume = slicer.util.addVolumeFromArray(np.zeros((3, 40, 40), dtype=np.float32), name="a 3D volume")
    widget._parameterNode.inputVolume = volume
    widget.ui.detectButton.click()
    assert [b["kind"] for b in harness.message_boxes] == ["error"]
    assert "single 2D image" in harness.message_boxes[0]["text"]
    assert widget._detection is None and widget.ui.detectButton.text == "Detect landmarks"


@pytest.mark.filterwarnings("error:does not have observer")  # leaving and re-entering lets go of each observer once
def test_pixel_spacing_box_stops_at_the_library_limit(harness, widget):
    """The box cannot offer a spacing the library refuses: its cap is images.MAX_SPACING_MM, after every
    connectGui (enter) too, and the parameter itself refuses more.  Its tooltip names the spacing the
    library assumes."""
    from CephLandmarksLib.imaging import images  # the installed copy

    box = widget.ui.spacingSpinBox
    for _ in range(2):
        assert (box.minimum, box.maximum) == (0.0, images.MAX_SPACING_MM) and box.specialValueText == "from image"
        assert f"{images.DEFAULT_SPACING_MM:g} mm assumed" in box.toolTip  # the library's own default, not a copy
        box.value = 10 * images.MAX_SPACING_MM
        assert box.value == widget._parameterNode.spacingMm == images.MAX_SPACING_MM
        assert images.user_spacing(box.value) == (images.MAX_SPACING_MM,) * 2  # the cap itself is accepted
        widget.exit()
        widget.enter()
    with pytest.raises(ValueError):
        widget._parameterNode.spacingMm = images.MAX_SPACING_MM + 0.01
    assert harness.message_boxes == [] and harness.slot_errors == []


def test_an_rgb_radiograph_can_be_selected_and_detected(harness, widget):
    import slicer

    rgb = np.repeat(skull()[None, :, :, None], 3, axis=3).astype(np.uint8)
    volume = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLVectorVolumeNode", "rgb radiograph")
    slicer.util.updateVolumeFromArray(volume, rgb)
    widget.ui.inputSelector.setCurrentNode(volume)
    assert widget._parameterNode.inputVolume is volume
    detectAndWait(harness, widget)
    assert harness.message_boxes == [] and widget._parameterNode.landmarks.GetNumberOfControlPoints() == 19


def test_closing_the_scene_during_detection_cancels_it(harness, widget, tmp_path):
    loadRadiograph(harness, widget, writeNrrd(tmp_path / "skull.nrrd", skull()))
    widget.ui.detectButton.click()
    job = widget._detection
    harness.scene.Clear(0)
    harness.process_events(until=lambda: widget._detection is None, timeout_s=30)
    assert job.cancelled and not job.folder.exists()
    assert harness.scene.GetNumberOfNodesByClass("vtkMRMLMarkupsFiducialNode") == 0
    assert harness.message_boxes == [] and harness.slot_errors == []


def test_measurements_follow_a_corrected_point(harness, widget, tmp_path):
    loadRadiograph(harness, widget, writeNrrd(tmp_path / "skull.nrrd", skull()))
    detectAndWait(harness, widget)
    node = widget._parameterNode.landmarks
    table = node.GetNodeReference(sys.modules["CephLandmarksSlicer.record"].MEASUREMENTS_REFERENCE)

    def column(name):
        t = table.GetTable()
        return [t.GetValueByName(r, name).ToString() for r in range(t.GetNumberOfRows())]

    assert not any(column("Corrected landmarks"))
    b = sys.modules["CephLandmarksSlicer.markups"].controlPointIndex(node, 6)  # B point
    position = np.array(node.GetNthControlPointPosition(b))
    node.SetNthControlPointPosition(b, *(position + [2.0, 1.0, 0.0]))
    harness.process_events(until=lambda: any(column("Corrected landmarks")), timeout_s=5)
    corrected = [c for c in column("Corrected landmarks") if c]
    assert corrected and all("B" in c.split(", ") for c in corrected)
    assert widget.ui.measurementsTableView.mrmlTableNode() is table
    # The exports after review carry the corrected point and the recomputed measurements.
    harness.queue_file_dialog(str(tmp_path / "reviewed.json"))
    widget.ui.exportJsonButton.click()
    exported = json.loads((tmp_path / "reviewed.json").read_text())
    assert exported["measurements"]["corrected_landmarks"] == ["B"]
    assert any("B" in item.get("corrected", []) for item in exported["measurements"]["items"])
    assert [lm["edited"] for lm in exported["landmarks"] if lm["abbreviation"] == "B"] == [True]
    harness.queue_file_dialog(str(tmp_path / "report"))
    (tmp_path / "report").mkdir()
    widget.ui.exportReportButton.click()
    assert sorted(p.suffix for p in (tmp_path / "report").iterdir()) == [".pdf", ".png"]
    assert harness.slot_errors == [] and harness.message_boxes == []


@pytest.fixture(scope="module")
def training_dataset(tmp_path_factory):
    """A generic-layout dataset large enough for the default holdout of 20: 26 train, 2 test."""
    from conftest import make_generic_dataset

    return make_generic_dataset(tmp_path_factory.mktemp("training"), n_train=26, n_test=2, seed=1)


def test_a_failed_training_run_gives_one_message(harness, widget, generic_dataset, tmp_path):
    ui = widget.ui
    ui.datasetPathLineEdit.currentPath = str(generic_dataset)  # 8 training images: fewer than the holdout
    ui.trainModelPathLineEdit.currentPath = str(tmp_path / "never.safetensors")
    ui.trainButton.click()
    harness.process_events(until=lambda: widget._training is None, timeout_s=120)
    assert [b["kind"] for b in harness.message_boxes] == ["error"]
    assert "cannot hold out 20 of 8 images" in harness.message_boxes[0]["text"]
    assert "finished (exit code 2)" in ui.trainLogTextEdit.toPlainText()
    assert not (tmp_path / "never.safetensors").exists() and ui.trainButton.text == "Train"


def test_training_tab_runs_train_calibrate_evaluate(harness, widget, training_dataset, tmp_path):
    generic_dataset = training_dataset
    ui = widget.ui
    model = tmp_path / "trained.safetensors"
    ui.datasetPathLineEdit.currentPath = str(generic_dataset)
    ui.trainModelPathLineEdit.currentPath = str(model)
    ui.evaluateOutputPathLineEdit.currentPath = str(tmp_path / "plots")
    ui.epochsSpinBox.value = 1
    ui.inputSizeLineEdit.text = "64x64"
    ui.trainDeviceComboBox.currentIndex = ui.trainDeviceComboBox.findText("cpu")
    (tmp_path / "plots").mkdir()
    old = tmp_path / "plots" / "from_an_earlier_run.png"
    old.write_bytes(b"\x89PNG\r\n\x1a\n")
    os.utime(old, (1e9, 1e9))
    sidecar = tmp_path / "trained.calibration.json"
    for command, button in (("train", ui.trainButton), ("calibrate", ui.calibrateButton),
                            ("evaluate", ui.evaluateButton)):
        progress = []
        weights = model.read_bytes() if command == "calibrate" else None
        ui.trainProgressBar.connect("valueChanged(int)", progress.append)
        button.click()
        assert button.text == "Cancel" and not ui.trainButton.enabled == (command != "train")
        harness.process_events(until=lambda: widget._training is None, timeout_s=240)
        log = ui.trainLogTextEdit.toPlainText()
        assert f"$ ceph-landmarks {command} --" in log and f"{command} finished (exit code 0)." in log, log[-1500:]
        assert button.text != "Cancel" and harness.slot_errors == [] and harness.message_boxes == []
        assert 1000 in progress and "[progress]" not in log  # from the --progress lines, which stay out of the log
        ui.trainProgressBar.disconnect("valueChanged(int)", progress.append)
        if command == "calibrate":  # into the model's sidecar: the weights file stays byte-identical
            assert f"$ ceph-landmarks calibrate --model {model} --dataset {generic_dataset} --out {sidecar} " in log
            assert model.read_bytes() == weights and sidecar.is_file()
            assert json.loads(sidecar.read_text())["weights_file"] == model.name
            # listed and selected, and the model field now names it, so that Evaluate reads the calibration
            assert ui.modelSelector.currentData == str(sidecar.resolve())
            assert ui.modelSelector.currentText.endswith(f"(trained, settings {sidecar.name})")
            assert ui.trainModelPathLineEdit.currentPath == str(sidecar.resolve())
    assert f"$ ceph-landmarks evaluate --model {sidecar.resolve()} " in log
    assert "CephLandmarksLib" not in log.split("$ ceph-landmarks train")[1].splitlines()[0]
    labels = [ui.modelSelector.itemText(i) for i in range(ui.modelSelector.count)]
    assert ui.modelSelector.findData(str(model.resolve())) >= 0, labels  # the weights file keeps its own entry
    plots = [ui.plotListWidget.item(i).text() for i in range(ui.plotListWidget.count)]
    assert plots and all(Path(p).parent == tmp_path / "plots" for p in plots)
    assert str(old) not in plots  # only what this run wrote
    assert "MRE" in ui.metricsLabel.text


def test_cancel_training_kills_it(harness, widget, training_dataset, tmp_path):
    ui = widget.ui
    ui.datasetPathLineEdit.currentPath = str(training_dataset)
    ui.trainModelPathLineEdit.currentPath = str(tmp_path / "never.safetensors")
    ui.epochsSpinBox.value = 50
    ui.inputSizeLineEdit.text = "64x64"
    ui.trainButton.click()
    process = widget._training[1]
    ui.trainButton.click()  # Cancel
    harness.process_events(until=lambda: widget._training is None, timeout_s=30)
    assert not process.running and "train cancelled." in ui.trainLogTextEdit.toPlainText()
    assert not (tmp_path / "never.safetensors").exists() and ui.trainButton.text == "Train"


CALIBRATE_STAND_IN = """
import sys, time
from pathlib import Path
out = Path(sys.argv[sys.argv.index("--out") + 1])
out.write_text("temperatures fitted, regions not yet")  # the CLI writes the sidecar twice
Path(out.parent, "." + out.name + ".x1.part").write_text("half")
print("[progress] 0.30 fitting regions", file=sys.stderr, flush=True)
time.sleep(120)
"""


def test_cancel_calibrate_leaves_the_sidecar_as_it_was(harness, widget, tmp_path, monkeypatch):
    """Calibrate is cancelled after the CLI's first write of the sidecar: the earlier calibration comes back."""
    import importlib

    commands = importlib.import_module("CephLandmarksSlicer.commands")
    real = commands.trainingCommand
    script = tmp_path / "calibrate_stand_in.py"
    script.write_text(CALIBRATE_STAND_IN)
    monkeypatch.setattr(commands, "trainingCommand",
                        lambda python, *a: [python, "-u", str(script), *real(python, *a)[3:]])
    ui = widget.ui
    (tmp_path / "data").mkdir()
    model, sidecar = tmp_path / "m.safetensors", tmp_path / "m.calibration.json"
    model.write_bytes(b"weights")
    sidecar.write_text("the earlier calibration")
    ui.datasetPathLineEdit.currentPath = str(tmp_path / "data")
    ui.trainModelPathLineEdit.currentPath = str(model)
    ui.calibrateButton.click()
    harness.process_events(until=lambda: (tmp_path / ".m.calibration.json.x1.part").exists(), timeout_s=30)
    assert sidecar.read_text() != "the earlier calibration"
    ui.calibrateButton.click()  # Cancel
    harness.process_events(until=lambda: widget._training is None, timeout_s=30)
    assert "calibrate cancelled." in ui.trainLogTextEdit.toPlainText() and harness.message_boxes == []
    assert sidecar.read_text() == "the earlier calibration" and model.read_bytes() == b"weights"
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith("m")) == [sidecar.name, model.name]
    assert not list(tmp_path.glob(".*.part")) and ui.trainModelPathLineEdit.currentPath == str(model)


def test_unset_dataset_folder_is_refused(harness, widget):
    """An unset pathlib.Path parameter reads as Path('.'), an existing folder: it must not pass."""
    assert str(widget._parameterNode.datasetFolder) == "."
    widget.ui.trainButton.click()
    assert [b["kind"] for b in harness.message_boxes] == ["error"]
    assert "Choose the dataset folder" in harness.message_boxes[0]["text"]
    assert widget._training is None and widget.ui.trainButton.text == "Train"


def test_self_test_passes_in_the_installed_layout(harness, installed):
    """The synthetic image; structure, not accuracy. A shipped module never looks for a development
    data set: an unreadable shared/data/isbi2015 image planted above the installed folder is not read."""
    planted = Path(installed).parent / "shared" / "data" / "isbi2015" / "RawImage" / "Test1Data" / "151.jpg"
    planted.parent.mkdir(parents=True)
    try:
        planted.write_bytes(b"not an image")
        module = harness.load_module("CephLandmarks")
        harness.app.setTestingEnabled(True)
        test = module.CephLandmarksTest()
        test.messageDelay = 0
        test.runTest()
        assert harness.slot_errors == []
    finally:
        shutil.rmtree(Path(installed).parent / "shared")


def test_an_old_slicer_gets_one_message(harness):
    module = harness.load_module("CephLandmarks")
    module.MINIMUM_PYTHON = (99, 0)
    widget = harness.create_widget("CephLandmarks")
    assert widget.ui is None and harness.slot_errors == []
    texts = [w.text for w in widget.parent.findChildren(sys.modules["qt"].QLabel)]
    assert any("needs 3D Slicer 5.10 or later" in t for t in texts), texts


def test_cleanup_stops_timers_and_processes(harness, widget, tmp_path):
    loadRadiograph(harness, widget, writeNrrd(tmp_path / "skull.nrrd", skull()))
    widget.ui.detectButton.click()
    job = widget._detection
    widget._editTimer.start()
    widget.cleanup()
    harness.process_events(until=lambda: not job.running, timeout_s=30)
    assert not widget._editTimer.isActive() and job.cancelled and not job.folder.exists()


def test_training_checks_the_requirements_first(harness, widget, training_dataset, tmp_path, monkeypatch):
    """A missing package (Slicer has no tqdm) is offered for install before the process starts."""
    import slicer

    deps = sys.modules.get("CephLandmarksSlicer.dependencies") or __import__(
        "CephLandmarksSlicer.dependencies", fromlist=["x"])
    installed, missing = [], [("tqdm", "tqdm>=4.60"), ("torchvision", "torchvision>=0.16")]
    monkeypatch.setattr(deps, "missingRequirements", lambda requirements: [] if installed else missing)
    monkeypatch.setattr(slicer.util, "pip_install", lambda requirements: installed.append(list(requirements)))
    ui = widget.ui
    ui.datasetPathLineEdit.currentPath = str(training_dataset)
    ui.trainModelPathLineEdit.currentPath = str(tmp_path / "m.safetensors")
    harness.queue_answer(sys.modules["qt"].QMessageBox.Cancel)
    ui.trainButton.click()
    assert [b["kind"] for b in harness.message_boxes] == ["question"] and "tqdm" in harness.message_boxes[0]["text"]
    assert widget._training is None and installed == []
    ui.trainButton.click()  # OK this time (the default answer)
    assert installed == [["torchvision>=0.16"], ["tqdm>=4.60"]]  # no PyTorch Utils here: pip gets torchvision
    assert widget._training is not None
    widget._training[1].kill()
    harness.process_events(until=lambda: widget._training is None, timeout_s=30)


def test_from_the_source_tree_without_building(tmp_path):
    """docs/slicer.md's "from source": CephLandmarks/ added to the module paths, nothing built."""
    h = install_slicer_environment(tmp_path / "slicer", ROOT / "CephLandmarks")
    try:
        module = h.load_module("CephLandmarks")
        widget = h.create_widget("CephLandmarks")
        assert Path(module.__file__).parent == ROOT / "CephLandmarks" and widget.ui is not None
        assert Path(widget.resourcePath("UI/CephLandmarks.ui")).is_file()
        assert widget.ui.modelSelector.currentData.endswith("isbi2015-384x480.safetensors")
        assert h.slot_errors == [] and h.message_boxes == []
    finally:
        h.teardown()
