"""The second stage in the installed module (the harness): Detect's "Second stage" checkbox (on: the library's
default refiner is named, here the one the user trained for the shipped model, in the per-user folder, with no
refiner beside the shipped weights; and the node, the fine maps and the CLI JSON export carry the
second stage; off: `--refine none`, the first stage alone), and the Training tab's "Train second stage"
(bad input refused with a message and nothing started; the progress bar; Cancel ends the whole process tree
and leaves no half-written refiner; a real train-refiner run behind an imported model, whose refiner the
next Detect then uses)."""

import json
from pathlib import Path

import pytest
from test_slicer_module_installed import detectAndWait, loadRadiograph, skull, writeNrrd

from slicer_harness import build, missing_reason
from slicer_harness.process import descendant_pids, pid_running

pytestmark = pytest.mark.skipif(bool(missing_reason() or build.skip_reason()),
                                reason=str(missing_reason() or build.skip_reason()))

REFINER_SUFFIX = ".refiner.safetensors"


def _module(name):
    """A helper module of the installed CephLandmarksSlicer (imported from there if the module has not yet)."""
    import importlib

    return importlib.import_module(f"CephLandmarksSlicer.{name}")


@pytest.fixture
def noShippedRefiner(installed):
    """No refiner beside the installed shipped weights (a checkout may hold one; a clone from git does not), so
    that the library's default is the per-user folder's; put back afterwards."""
    moved = [(p, p.with_name(p.name + ".aside")) for p in (Path(installed) / "Resources" / "Models").glob(
        "*" + REFINER_SUFFIX)]
    for path, aside in moved:
        path.rename(aside)
    try:
        yield
    finally:
        for path, aside in moved:
            aside.rename(path)


def shippedRefinerBytes(model, tmp_path):
    """A refiner of random weights trained (its header says) behind the shipped weights `model`."""
    from test_refiner_default import real_refiner

    from CephLandmarksLib.files import file_sha256

    return real_refiner(tmp_path / "made.refiner.safetensors", model, file_sha256(model)).read_bytes()


def _shippedRefiner(widget, tmp_path):
    """A refiner of random weights for the shipped model, where Train second stage puts one (the user folder)."""
    model = Path(widget.ui.modelSelector.currentData)
    assert model.name == "isbi2015-384x480.safetensors"
    userDir = widget.logic.registry().user_dir
    userDir.mkdir(parents=True, exist_ok=True)
    own = userDir / (model.name[: -len(".safetensors")] + REFINER_SUFFIX)
    own.write_bytes(shippedRefinerBytes(model, tmp_path))
    return own


def test_detect_with_and_without_the_second_stage(harness, widget, tmp_path, noShippedRefiner):
    ui, p = widget.ui, widget._parameterNode
    assert ui.secondStageCheckBox.checked and p.useSecondStage  # on by default
    assert "refiner beside it" in ui.secondStageCheckBox.toolTip
    own = _shippedRefiner(widget, tmp_path)
    volume = loadRadiograph(harness, widget, writeNrrd(tmp_path / "skull.nrrd", skull()))

    ui.detectButton.click()
    line = widget._detection.job.commandLine
    assert line[line.index("--refine") + 1] == str(own)  # the library's default, asked with Slicer's user folder
    harness.process_events(until=lambda: widget._detection is None, timeout_s=240)
    assert harness.message_boxes == [] and harness.slot_errors == [], harness.message_boxes
    node = p.landmarks
    record = _module("record").detectionRecord(node)
    refined = [e["refined"] for e in record["landmarks"]]  # every point has the flag; a missing point is False
    assert record["refiner"]["file"] == own.name and record["refiner"]["refined"] == sum(refined) > 0
    maps = _module("maps")
    assert node.GetNodeReference(maps.FINE_MAPS_REFERENCE) is not None  # from the format 2 heatmaps file
    assert maps.landmarkCombinedMap(node) is not None
    exported = tmp_path / "export.json"
    _module("exports").exportLandmarks(node, "json", exported)
    out = json.loads(exported.read_text())
    assert out["refiner"] == record["refiner"]
    assert [lm["refined"] for lm in out["landmarks"]] == [r for r, e in zip(refined, record["landmarks"], strict=True)
                                                          if e["ras"] is not None]

    ui.secondStageCheckBox.checked = False
    assert p.useSecondStage is False
    ui.detectButton.click()
    line = widget._detection.job.commandLine
    assert line[line.index("--refine"):line.index("--refine") + 2] == ["--refine", "none"]
    harness.process_events(until=lambda: widget._detection is None, timeout_s=240)
    assert harness.message_boxes == [] and harness.slot_errors == [], harness.message_boxes
    assert p.landmarks is node  # the untouched node is redone: the first stage alone
    record = _module("record").detectionRecord(node)
    assert "refiner" not in record and not any("refined" in e for e in record["landmarks"])
    assert node.GetNodeReference(maps.FINE_MAPS_REFERENCE) is None
    assert node.GetNodeReferenceID(_module("record").VOLUME_REFERENCE) == volume.GetID()


def test_train_second_stage_refuses_bad_input(harness, widget, tmp_path):
    ui = widget.ui
    ui.trainRefinerButton.click()  # no dataset folder (an unset path reads ".")
    assert [b["kind"] for b in harness.message_boxes] == ["error"]
    assert "Choose the dataset folder" in harness.message_boxes[0]["text"]
    assert widget._training is None and ui.trainRefinerButton.text == "Train second stage"
    (tmp_path / "data").mkdir()
    ui.datasetPathLineEdit.currentPath = str(tmp_path / "data")
    own = _shippedRefiner(widget, tmp_path)  # an earlier refiner of the shipped model: not overwritten without Resume
    before = own.read_bytes()
    ui.trainRefinerButton.click()
    assert "tick Resume" in harness.message_boxes[-1]["text"] and widget._training is None
    ui.refinerResumeCheckBox.checked = True  # Resume, but no checkpoint to continue
    assert widget._parameterNode.refinerResume
    ui.trainRefinerButton.click()
    assert "Nothing to resume" in harness.message_boxes[-1]["text"] and widget._training is None
    assert own.read_bytes() == before and len(harness.message_boxes) == 3
    assert "$ ceph-landmarks" not in ui.trainLogTextEdit.toPlainText()  # nothing started


TRAIN_REFINER_STAND_IN = """
import json, sys, time
from pathlib import Path
out = Path(sys.argv[sys.argv.index("--out") + 1])
epochs = int(sys.argv[sys.argv.index("--epochs") + 1])
out.parent.mkdir(parents=True, exist_ok=True)  # the per-user model folder may not exist yet (atomic_write makes it)
for epoch in range(1, 3):
    print(json.dumps({"epoch": epoch, "train_loss": 5.0, "val_mre_mm": 1.2}), file=sys.stderr, flush=True)
if sys.argv[-1].startswith("--finish="):  # the refiner it "trained": a copy of this file
    out.write_bytes(Path(sys.argv[-1][len("--finish="):]).read_bytes())
    print(out)
    sys.exit(0)
Path(out.parent, "." + out.name[:32] + ".x1.part").write_text("half")
Path(str(out) + ".work").mkdir()
Path(str(out) + ".work", "last.pt").write_text("checkpoint")
print("[progress] 0.50 training: epoch 2/4", file=sys.stderr, flush=True)
time.sleep(120)
"""


def _standIn(monkeypatch, tmp_path, finish=None):
    """train-refiner replaced by a script that prints its epoch records and either writes the refiner (a copy of
    the file `finish`) or hangs."""
    import importlib

    secondStage = importlib.import_module("CephLandmarksSlicer.secondStage")
    real = secondStage.refinerCommand
    script = tmp_path / "train_refiner_stand_in.py"
    script.write_text(TRAIN_REFINER_STAND_IN)

    def command(python, *a, **k):
        line, output = real(python, *a, **k)
        return [python, "-u", str(script), *line[3:], *([f"--finish={finish}"] if finish else [])], output

    monkeypatch.setattr(secondStage, "refinerCommand", command)


def test_train_second_stage_shows_progress_and_cancel_ends_the_process_tree(harness, widget, tmp_path,
                                                                           monkeypatch):
    _standIn(monkeypatch, tmp_path)
    ui = widget.ui
    (tmp_path / "data").mkdir()
    ui.datasetPathLineEdit.currentPath = str(tmp_path / "data")
    ui.epochsSpinBox.value = 4
    shippedFolder = Path(_module("secondStage").__file__).parents[1] / "Resources" / "Models"
    shipped = lambda: sorted((p.name, p.read_bytes()) for p in shippedFolder.glob("*"))  # noqa: E731
    before = shipped()
    progress = []
    ui.trainProgressBar.connect("valueChanged(int)", progress.append)
    ui.trainRefinerButton.click()
    assert ui.trainRefinerButton.text == "Cancel" and not ui.trainButton.enabled and not ui.adaptButton.enabled
    userDir = widget.logic.registry().user_dir
    out = userDir / ("isbi2015-384x480" + REFINER_SUFFIX)  # a shipped model's refiner: in the user folder
    log = ui.trainLogTextEdit.toPlainText()
    assert f"$ ceph-landmarks train-refiner --model {ui.modelSelector.currentData} --dataset {tmp_path / 'data'} " \
           f"--out {out} --epochs 4 --progress" in log
    process = widget._training[1]
    part, checkpoint = userDir / f".{out.name[:32]}.x1.part", Path(f"{out}.work") / "last.pt"
    harness.process_events(until=lambda: part.exists() and checkpoint.is_file(), timeout_s=60)
    harness.process_events(until=lambda: any("[progress]" in x for x in widget._trainingLines), timeout_s=30)
    assert [v for v in progress if v > 1][-2:] == [250, 500], progress  # epochs 1 and 2 of 4, then [progress] 0.50
    assert '{"epoch": 2' in ui.trainLogTextEdit.toPlainText()  # the records stay in the log
    launcher = process._process.processId()
    tree = [launcher, *descendant_pids(launcher)]
    assert len(tree) >= 2  # PythonSlicer is a launcher: Python is its child
    ui.trainRefinerButton.click()  # Cancel
    harness.process_events(until=lambda: widget._training is None, timeout_s=30)
    assert [pid for pid in tree if pid_running(pid)] == []
    log = ui.trainLogTextEdit.toPlainText()
    assert "train-refiner cancelled." in log and "tick Resume to continue" in log
    assert not out.exists() and not part.exists()  # no half-written refiner
    assert checkpoint.is_file()  # the checkpoint stays, for Resume
    assert harness.message_boxes == [] and harness.slot_errors == []
    assert ui.trainRefinerButton.text == "Train second stage" and ui.trainButton.enabled
    assert shipped() == before  # the shipped models' folder: not written


def test_train_second_stage_finished_names_the_refiner_and_detect_uses_it(harness, widget, tmp_path,
                                                                         monkeypatch, noShippedRefiner):
    made = tmp_path / "trained.refiner.safetensors"
    made.write_bytes(shippedRefinerBytes(Path(widget.ui.modelSelector.currentData), tmp_path))
    _standIn(monkeypatch, tmp_path, finish=made)
    ui = widget.ui
    (tmp_path / "data").mkdir()
    ui.datasetPathLineEdit.currentPath = str(tmp_path / "data")
    ui.epochsSpinBox.value = 2
    progress = []
    ui.trainProgressBar.connect("valueChanged(int)", progress.append)
    ui.trainRefinerButton.click()
    harness.process_events(until=lambda: widget._training is None, timeout_s=60)
    out = widget.logic.registry().user_dir / ("isbi2015-384x480" + REFINER_SUFFIX)
    log = ui.trainLogTextEdit.toPlainText()
    assert "train-refiner finished (exit code 0)." in log and f"Second stage written to {out}" in log, log
    assert out.read_bytes() == made.read_bytes() and harness.message_boxes == [] and harness.slot_errors == []
    assert [v for v in progress if v > 1][:2] == [500, 1000], progress  # epochs 1 and 2 of 2, from their records
    loadRadiograph(harness, widget, writeNrrd(tmp_path / "skull.nrrd", skull()))
    ui.detectButton.click()
    line = widget._detection.job.commandLine
    assert line[line.index("--refine") + 1] == str(out)
    ui.detectButton.click()  # Cancel: the detection with it is test_detect_with_and_without_the_second_stage's
    harness.process_events(until=lambda: widget._detection is None, timeout_s=30)


def test_train_second_stage_for_real_then_detect_uses_it(harness, widget, tiny_model, generic_dataset, tmp_path):
    """train-refiner behind an imported (tiny) model: its refiner lands beside the model in the user folder,
    and the next Detect with that model names it (the library's default: beside the model)."""
    ui = widget.ui
    harness.queue_file_dialog(str(tiny_model))
    ui.importModelButton.click()
    model = Path(ui.modelSelector.currentData)
    assert model.parent == widget.logic.registry().user_dir and harness.message_boxes == []
    ui.datasetPathLineEdit.currentPath = str(generic_dataset)
    ui.epochsSpinBox.value = 1
    progress = []
    ui.trainProgressBar.connect("valueChanged(int)", progress.append)
    ui.trainRefinerButton.click()
    harness.process_events(until=lambda: widget._training is None, timeout_s=500)
    log = ui.trainLogTextEdit.toPlainText()
    assert "train-refiner finished (exit code 0)." in log, log[-2000:]
    out = model.with_name(model.name[: -len(".safetensors")] + REFINER_SUFFIX)
    assert out.is_file() and f"Second stage written to {out}" in log
    assert 1000 in progress and "[progress]" not in log and harness.message_boxes == []
    import SimpleITK as sitk

    image = sitk.ReadImage(str(generic_dataset / "img09.png"))  # an image the tiny model never trained on
    image.SetSpacing((0.5, 0.5))
    sitk.WriteImage(image, str(tmp_path / "case.nrrd"))
    loadRadiograph(harness, widget, tmp_path / "case.nrrd")
    ui.detectButton.click()
    line = widget._detection.job.commandLine
    assert line[line.index("--refine") + 1] == str(out)  # beside the model: the library's default
    harness.process_events(until=lambda: widget._detection is None, timeout_s=240)
    assert harness.slot_errors == [] and harness.message_boxes == []
    record = _module("record").detectionRecord(widget._parameterNode.landmarks)
    assert record["refiner"]["file"] == out.name


def test_detect_and_wait_still_works_with_the_checkbox_off(harness, widget, tmp_path):
    """The checkbox off: the first stage alone, whether or not a refiner lies beside the shipped model."""
    widget.ui.secondStageCheckBox.checked = False
    loadRadiograph(harness, widget, writeNrrd(tmp_path / "skull.nrrd", skull()))
    detectAndWait(harness, widget)
    assert harness.message_boxes == [] and harness.slot_errors == []
    assert "refiner" not in _module("record").detectionRecord(widget._parameterNode.landmarks)
