"""The review loop feeding adaptation, in the installed module on Slicer 5.12's Python layer (the
harness of test_slicer_module_installed.py): Add to clinic dataset (round trip against detection,
the question about unreviewed flags, duplicates, refusals) and Adapt in the Training tab (command
line, progress, Cancel, failure, the adapted model in the list with its clinic figures).

Skips when ../shared/slicer-5.12, slicer-core or cmake is missing."""

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from slicer_fixtures import syntheticDetection
from test_slicer_module_installed import detectAndWait, loadRadiograph, skull, writeNrrd

from slicer_harness import build, missing_reason

pytestmark = pytest.mark.skipif(bool(missing_reason() or build.skip_reason()),
                                reason=str(missing_reason() or build.skip_reason()))

CLINIC_SETTING = "CephLandmarks/ClinicFolder"


# The fixtures installed, harness and widget live in conftest.py (shared with the other module tests).


def lib(name):
    """A module of the installed library or helper package (never the source tree's copy)."""
    import importlib

    return importlib.import_module(name)


def showSynthetic(widget, name="synthetic ceph", flagged=(3, 7, 12), spacing_source="user", seed=0):
    """A detection shown on a volume without running the model: 19 points, flagged (3, 7, 12) = Or, Pog, UIT."""
    import slicer

    detection = syntheticDetection(seed=seed, flagged=flagged)
    detection.spacing_source = spacing_source
    w, h = detection.image_size
    pixels = np.random.default_rng(seed).integers(0, 4000, size=(1, h, w)).astype(np.float32)
    volume = slicer.util.addVolumeFromArray(pixels, name=name)
    volume.SetSpacing(0.1, 0.1, 1.0)
    node = widget.logic.showDetection(detection, volume)
    widget._parameterNode.landmarks = node
    return node, volume, detection


def readCsv(folder):
    return (Path(folder) / "landmarks.csv").read_text()


def files(folder):
    folder = Path(folder)
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else None


# --- Add to clinic dataset -----------------------------------------------------------------------


def test_detect_then_add_round_trips_to_the_detections_pixels(harness, widget, tmp_path):
    """Real detection on a rotated, off-origin volume; the CSV read back by load_generic holds the
    detection's pixels for untouched points and the moved position for a moved point; the written
    image detected again by the CLI gives the same points."""
    import vtk

    volume = loadRadiograph(harness, widget, writeNrrd(tmp_path / "skull.nrrd", skull()))
    directions = vtk.vtkMatrix4x4()
    for r, row in enumerate([[0.0, -1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]]):  # 90 degrees in plane
        for c, v in enumerate(row):
            directions.SetElement(r, c, v)
    volume.SetIJKToRASDirectionMatrix(directions)
    volume.SetOrigin(12.5, -40.0, 7.0)
    detectAndWait(harness, widget)
    assert [b["kind"] for b in harness.message_boxes] == [] and harness.slot_errors == []
    node = widget._parameterNode.landmarks
    markups = lib("CephLandmarksSlicer.markups")
    detected = {e["abbreviation"]: e for e in lib("CephLandmarksSlicer.record").detectionRecord(node)["landmarks"]}

    rasToIjk = vtk.vtkMatrix4x4()
    volume.GetRASToIJKMatrix(rasToIjk)
    ijkToRas = vtk.vtkMatrix4x4()
    volume.GetIJKToRASMatrix(ijkToRas)
    expected = {}
    for abbreviation, entry in detected.items():
        i = markups.controlPointIndex(node, entry["index"])
        if entry.get("missing"):  # anatomy the synthetic image lacks: the user places it at pixel (30, 40)
            position = ijkToRas.MultiplyPoint((30.0, 40.0, 0.0, 1.0))[:3]
            node.SetNthControlPointPosition(i, *position)
            expected[abbreviation] = (30.0, 40.0)
        else:
            expected[abbreviation] = (entry["x_px"], entry["y_px"])
    b = markups.controlPointIndex(node, 6)  # B point, moved by the user
    moved = np.array(node.GetNthControlPointPosition(b)) + [2.0, 1.0, 0.0]
    node.SetNthControlPointPosition(b, *moved)
    expected["B"] = tuple(rasToIjk.MultiplyPoint((*moved, 1.0))[:2])  # the volume's own RAS -> IJK

    clinicFolder = tmp_path / "clinic"
    widget.ui.clinicFolderPathLineEdit.currentPath = str(clinicFolder)
    widget.ui.addToClinicButton.click()
    assert {b["kind"] for b in harness.message_boxes} <= {"question"} and harness.slot_errors == []
    assert "Added skull.nrrd" in widget.ui.statusLabel.text

    datasets = lib("CephLandmarksLib.annotations.datasets")
    (sample,) = datasets.load_generic(clinicFolder)
    abbreviations = [lm.abbreviation for lm in lib("CephLandmarksLib.landmarks").ISBI_LANDMARKS]
    for k, abbreviation in enumerate(abbreviations):
        assert sample.landmarks_px[k] == pytest.approx(expected[abbreviation], abs=1e-3), abbreviation
    assert abs(sample.landmarks_px[5][0] - detected["B"]["x_px"]) > 1.0  # B really moved
    assert sample.spacing_mm == (0.5, 0.5)
    radiograph = lib("CephLandmarksLib.imaging.images").read_radiograph(sample.image_path)
    assert np.array_equal(radiograph.pixels, skull()) and radiograph.spacing_mm == (0.5, 0.5)

    # The written image, detected again by the command line: the same points as in Slicer.
    out = tmp_path / "cli"
    r = subprocess.run([sys.executable, "-m", "CephLandmarksLib", "detect", str(sample.image_path), "--model",
                        widget.ui.modelSelector.currentData, "--out-dir", str(out), "--no-overlay"],
                       capture_output=True, text=True, cwd=tmp_path,
                       env=harness.cli_environment())
    assert r.returncode == 0, r.stderr[-800:]
    for lm in json.loads((out / "skull.json").read_text())["landmarks"]:
        if not lm.get("missing"):
            assert (lm["x_px"], lm["y_px"]) == pytest.approx((detected[lm["abbreviation"]]["x_px"],
                                                              detected[lm["abbreviation"]]["y_px"]), abs=2e-3)


def test_unreviewed_flagged_points_are_asked_about_and_no_writes_nothing(harness, widget, tmp_path):
    qt = sys.modules["qt"]
    node, volume, _ = showSynthetic(widget)
    clinicFolder = tmp_path / "clinic"
    widget.ui.clinicFolderPathLineEdit.currentPath = str(clinicFolder)
    assert widget.ui.addToClinicButton.enabled
    harness.queue_answer(qt.QMessageBox.No)
    widget.ui.addToClinicButton.click()
    assert [b["kind"] for b in harness.message_boxes] == ["question"]
    assert "3 flagged points" in harness.message_boxes[0]["text"] and "Or, Pog, UIT" in harness.message_boxes[0]["text"]
    assert files(clinicFolder) is None and "Not added" in widget.ui.statusLabel.text

    # Or marked reviewed, Pog corrected: only UIT is left to ask about.
    markups = lib("CephLandmarksSlicer.markups")
    markups.setReviewed(node, 3)
    pog = markups.controlPointIndex(node, 7)
    node.SetNthControlPointPosition(pog, *(np.array(node.GetNthControlPointPosition(pog)) + [1.0, 0.0, 0.0]))
    harness.queue_answer(qt.QMessageBox.Yes)
    widget.ui.addToClinicButton.click()
    assert [b["kind"] for b in harness.message_boxes] == ["question", "question"]
    assert "1 flagged points" in harness.message_boxes[1]["text"] and ": UIT." in harness.message_boxes[1]["text"]
    assert files(clinicFolder) == ["landmarks.csv", "synthetic_ceph.nrrd"]
    assert harness.slot_errors == []


def test_a_fully_reviewed_detection_is_added_without_a_question(harness, widget, tmp_path):
    node, _, _ = showSynthetic(widget)
    markups = lib("CephLandmarksSlicer.markups")
    for index in (3, 7, 12):
        markups.setReviewed(node, index)
    widget.ui.clinicFolderPathLineEdit.currentPath = str(tmp_path / "clinic")
    widget.ui.addToClinicButton.click()
    assert harness.message_boxes == [] and harness.slot_errors == []
    assert lib("CephLandmarksLib.annotations.clinic_dataset").case_count(tmp_path / "clinic") == 1


def test_the_same_radiograph_again_is_replaced_only_when_the_user_says_so(harness, widget, tmp_path):
    qt = sys.modules["qt"]
    node, volume, detection = showSynthetic(widget, flagged=())
    clinicFolder = tmp_path / "clinic"
    widget.ui.clinicFolderPathLineEdit.currentPath = str(clinicFolder)
    widget.ui.addToClinicButton.click()
    assert harness.message_boxes == []
    before = readCsv(clinicFolder)
    markups = lib("CephLandmarksSlicer.markups")
    s = markups.controlPointIndex(node, 1)
    node.SetNthControlPointPosition(s, *(np.array(node.GetNthControlPointPosition(s)) + [0.0, 0.5, 0.0]))
    volume.SetName("renamed")  # identity is the pixels, not the name
    harness.queue_answer(qt.QMessageBox.No)
    widget.ui.addToClinicButton.click()
    assert [b["kind"] for b in harness.message_boxes] == ["question"]
    assert "already in the clinic dataset as synthetic_ceph.nrrd" in harness.message_boxes[0]["text"]
    assert readCsv(clinicFolder) == before and files(clinicFolder) == ["landmarks.csv", "synthetic_ceph.nrrd"]
    harness.queue_answer(qt.QMessageBox.Yes)
    widget.ui.addToClinicButton.click()
    assert "Replaced" in widget.ui.statusLabel.text
    (sample,) = lib("CephLandmarksLib.annotations.datasets").load_generic(clinicFolder)
    y0 = detection.landmarks[0].y_px
    assert sample.landmarks_px[0][1] == pytest.approx(y0 + 0.5 / 0.1, abs=1e-3)  # the corrected S, 5 px down
    assert harness.slot_errors == []


@pytest.mark.parametrize("how", ["unplaced", "deleted"])
def test_a_point_without_position_gives_one_message_and_writes_nothing(harness, widget, tmp_path, how):
    node, _, _ = showSynthetic(widget, flagged=())
    markups = lib("CephLandmarksSlicer.markups")
    i = markups.controlPointIndex(node, 10)  # Go
    if how == "unplaced":
        node.SetNthControlPointPositionMissing(i)
    else:
        node.RemoveNthControlPoint(i)
    widget.ui.clinicFolderPathLineEdit.currentPath = str(tmp_path / "clinic")
    widget.ui.addToClinicButton.click()
    assert [b["kind"] for b in harness.message_boxes] == ["error"]
    text = harness.message_boxes[0]["text"]
    assert "landmark Go has no position: place all 19 points" in text and "Traceback" not in text
    assert files(tmp_path / "clinic") is None


def test_refusals_give_one_message_each(harness, widget, tmp_path, generic_dataset):
    # no clinic folder chosen
    node, volume, _ = showSynthetic(widget, flagged=())
    widget.ui.addToClinicButton.click()
    assert [b["kind"] for b in harness.message_boxes] == ["error"]
    assert "Choose the clinic dataset folder" in harness.message_boxes[-1]["text"]
    # a folder holding another generic dataset
    before = readCsv(generic_dataset)
    widget.ui.clinicFolderPathLineEdit.currentPath = str(generic_dataset)
    widget.ui.addToClinicButton.click()
    assert [b["kind"] for b in harness.message_boxes] == ["error"] * 2
    assert "choose another folder" in harness.message_boxes[-1]["text"]
    assert readCsv(generic_dataset) == before and not list(Path(generic_dataset).glob("*.nrrd"))
    # a detection whose spacing was only assumed
    showSynthetic(widget, name="no spacing", flagged=(), spacing_source="assumed", seed=1)
    widget.ui.clinicFolderPathLineEdit.currentPath = str(tmp_path / "clinic")
    widget.ui.addToClinicButton.click()
    assert [b["kind"] for b in harness.message_boxes] == ["error"] * 3
    assert "spacing of 'no spacing' is unknown" in harness.message_boxes[-1]["text"]
    assert files(tmp_path / "clinic") is None


def test_the_clinic_folder_is_remembered_and_shared_with_the_training_tab(harness, widget, tmp_path):
    ui = widget.ui
    ui.clinicFolderPathLineEdit.currentPath = str(tmp_path / "clinicA")
    assert ui.adaptClinicPathLineEdit.currentPath == str(tmp_path / "clinicA")
    assert harness.settings[CLINIC_SETTING] == str(tmp_path / "clinicA")
    ui.adaptClinicPathLineEdit.currentPath = str(tmp_path / "clinicB")  # set in the Training tab
    assert str(widget._parameterNode.clinicFolder) == str(tmp_path / "clinicB")
    assert ui.clinicFolderPathLineEdit.currentPath == str(tmp_path / "clinicB")
    harness.scene.Clear(0)  # a new scene (a new parameter node) starts from the remembered folder
    assert str(widget._parameterNode.clinicFolder) == str(tmp_path / "clinicB")
    assert ui.clinicFolderPathLineEdit.currentPath == str(tmp_path / "clinicB")
    assert harness.slot_errors == []


# --- Adapt ---------------------------------------------------------------------------------------

# Stands in for `ceph-landmarks adapt` where the test is about the module's side of the process.
# Mode from CLINIC/standin.json: "ok" (progress, then the base model's settings with an "adaptation"
# record: a sidecar for OUT.json, as the CLI writes it, else the base re-sealed; written atomically),
# "fail" (the CLI's error line, exit 2), "slow" (progress, then waits to be cancelled, a half-written
# temporary beside OUT).
STAND_IN = textwrap.dedent('''
    import json, os, struct, sys, time
    from pathlib import Path
    from CephLandmarksLib.store import modelmeta
    from CephLandmarksLib.store.sidecar import write_sidecar
    from CephLandmarksLib.files import atomic_write

    args = sys.argv[1:]
    assert args[0] == "adapt", args
    opts = dict(zip(args[1::2], args[2::2]))
    assert args[-1] == "--progress" and set(opts) >= {"--model", "--dataset", "--out"}, args
    mode = json.loads((Path(opts["--dataset"]) / "standin.json").read_text())["mode"]
    print("[progress] 0.25 cross-validating offsets", file=sys.stderr, flush=True)
    if mode == "fail":
        print("ceph-landmarks: error: the clinic dataset has 3 images; adaptation needs at least 10", file=sys.stderr)
        sys.exit(2)
    if mode == "slow":
        print("[progress] 0.50 fine-tuning", file=sys.stderr, flush=True)
        Path(opts["--out"]).with_name("." + Path(opts["--out"]).name + ".x1.part").write_bytes(b"half")
        Path(opts["--out"]).with_suffix(".report").mkdir()
        (Path(opts["--out"]).with_suffix(".report") / "report.md").write_text("# half")
        time.sleep(120)
    raw = Path(opts["--model"]).read_bytes()
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8:8 + n])
    meta = json.loads(header["__metadata__"][modelmeta.META_KEY])
    figures = lambda mre, c90: {"mre_mm": mre, "sdr_2mm_percent": 70.0, "coverage_50_percent": 50.0,
                                "coverage_90_percent": c90, "large_errors_flagged_percent": 80.0,
                                "good_points_flagged_percent": 10.0}
    meta["adaptation"] = {"base_sha256": "0" * 64, "n_images": 12, "clinic_images": ["a"] * 12,
                          "method": "offsets", "offsets_mm": [[0.0, 0.0]] * 19,
                          "cv_before": figures(1.81, 67.0), "cv_after": figures(1.35, 90.0)}
    if opts["--out"].endswith(".json"):
        write_sidecar(opts["--out"], opts["--model"], meta)
    else:
        header["__metadata__"][modelmeta.META_KEY] = modelmeta.dumps(modelmeta.seal(meta))
        text = json.dumps(header).encode()
        text += b" " * (-len(text) % 8)
        atomic_write(opts["--out"],
                     lambda tmp: Path(tmp).write_bytes(struct.pack("<Q", len(text)) + text + raw[8 + n:]))
    Path(opts["--out"]).with_suffix(".report").mkdir()
    (Path(opts["--out"]).with_suffix(".report") / "report.md").write_text("# adaptation report")
    print("[progress] 1.00 done", file=sys.stderr, flush=True)
    print(f"adapted model written: {opts['--out']}")
''')


@pytest.fixture
def standIn(harness, tmp_path, monkeypatch):
    """The module's adapt command line, checked, then run by the stand-in script instead of the CLI."""
    script = tmp_path / "adapt_stand_in.py"
    script.write_text(STAND_IN)
    adapt = lib("CephLandmarksSlicer.adapt")
    real = adapt.adaptCommand
    seen = []

    def command(python, base, clinicFolder, out):
        line = real(python, base, clinicFolder, out)
        seen.append(line)
        assert line[1:4] == ["-m", "CephLandmarksLib", "adapt"]
        return [line[0], "-u", str(script), *line[3:]]

    monkeypatch.setattr(adapt, "adaptCommand", command)
    return seen


def clinicWithMode(tmp_path, mode, name="clinicA"):
    folder = tmp_path / name
    folder.mkdir(exist_ok=True)
    (folder / "standin.json").write_text(json.dumps({"mode": mode}))
    return folder


def test_adapt_writes_a_sidecar_registers_and_selects_it_with_its_clinic_figures(harness, widget, tmp_path,
                                                                                   standIn):
    """Adapting the shipped model writes a sidecar of kilobytes into the per-user model folder (the shipped
    weights stay byte-identical), which the list shows as the adapted model, selected."""
    ui = widget.ui
    base = Path(ui.modelSelector.currentData)
    baseBytes = base.read_bytes()
    ui.adaptClinicPathLineEdit.currentPath = str(clinicWithMode(tmp_path, "ok"))
    progress = []
    ui.trainProgressBar.connect("valueChanged(int)", progress.append)
    ui.adaptButton.click()
    assert ui.adaptButton.text == "Cancel" and not ui.trainButton.enabled
    harness.process_events(until=lambda: widget._training is None, timeout_s=60)
    assert harness.message_boxes == [] and harness.slot_errors == []
    (line,) = standIn
    userModels = Path(widget.logic.registry().user_dir)
    out = userModels / f"{base.stem}-adapted-clinicA.json"
    assert line[line.index("--model") + 1] == str(base) and line[line.index("--out") + 1] == str(out)
    assert line[line.index("--dataset") + 1] == str(tmp_path / "clinicA")
    log = ui.trainLogTextEdit.toPlainText()
    assert f"$ ceph-landmarks adapt --model {base} --dataset {tmp_path / 'clinicA'} --out {out} --progress" in log
    assert "adapted model written" in log and "[progress]" not in log and "adapt finished (exit code 0)." in log
    assert f"Adaptation report: {out.with_suffix('.report')}" in log
    assert 250 in progress and 1000 in progress
    assert base.read_bytes() == baseBytes and out.is_file() and out.stat().st_size < 200_000
    assert json.loads(out.read_text())["weights_file"] == base.name
    assert not list(userModels.glob("*.safetensors"))  # no copy of the weights
    assert ui.modelSelector.currentData == str(out)
    (entry,) = [e for e in widget.logic.availableModels() if str(e.path) == ui.modelSelector.currentData]
    assert entry.kind == "adapted" and entry.weights == base
    assert ui.modelSelector.currentText == entry.label == f"{entry.name} (adapted, settings {out.name})"
    tooltip = ui.modelSelector.itemData(ui.modelSelector.currentIndex, sys.modules["qt"].Qt.ToolTipRole)
    assert ("Adapted to clinicA from 12 images (offsets): cross-validated MRE 1.81 \u2192 1.35 mm" in tooltip
            and "90 % regions 67 \u2192 90 %" in tooltip), tooltip
    # The base again, on the same clinic: a second file, the first one kept.
    ui.modelSelector.setCurrentIndex(ui.modelSelector.findData(str(base)))
    ui.adaptButton.click()
    harness.process_events(until=lambda: widget._training is None, timeout_s=60)
    assert ui.modelSelector.currentData == str(userModels / f"{base.stem}-adapted-clinicA-2.json")
    assert out.is_file() and ui.modelSelector.findData(str(out)) >= 0


def test_adapt_failure_gives_the_cli_line_in_one_message_and_no_model(harness, widget, tmp_path, standIn):
    ui = widget.ui
    ui.adaptClinicPathLineEdit.currentPath = str(clinicWithMode(tmp_path, "fail"))
    count = ui.modelSelector.count
    ui.adaptButton.click()
    harness.process_events(until=lambda: widget._training is None, timeout_s=60)
    assert [b["kind"] for b in harness.message_boxes] == ["error"]
    assert harness.message_boxes[0]["text"] == ("Adapt failed: the clinic dataset has 3 images; adaptation needs "
                                                "at least 10")
    assert ui.modelSelector.count == count and ui.adaptButton.text == "Adapt to clinic"
    assert not list(Path(widget.logic.registry().user_dir).glob("*adapted*"))


def test_cancel_adapt_kills_it_and_leaves_no_partial_model(harness, widget, tmp_path, standIn):
    ui = widget.ui
    ui.adaptClinicPathLineEdit.currentPath = str(clinicWithMode(tmp_path, "slow"))
    ui.adaptButton.click()
    process = widget._training[1]
    userModels = Path(widget.logic.registry().user_dir)
    harness.process_events(until=lambda: list(userModels.glob(".*.part")), timeout_s=30)
    ui.adaptButton.click()  # Cancel
    harness.process_events(until=lambda: widget._training is None, timeout_s=30)
    assert not process.running and "adapt cancelled." in ui.trainLogTextEdit.toPlainText()
    assert harness.message_boxes == [] and ui.adaptButton.text == "Adapt to clinic" and ui.trainButton.enabled
    assert [p.name for p in userModels.iterdir() if "adapted" in p.name] == []


def test_adapt_checks_its_inputs_before_starting(harness, widget, tmp_path):
    ui = widget.ui
    ui.adaptButton.click()  # no clinic folder
    assert [b["kind"] for b in harness.message_boxes] == ["error"]
    assert "choose the clinic dataset folder" in harness.message_boxes[-1]["text"]
    ui.adaptClinicPathLineEdit.currentPath = str(tmp_path / "nowhere")
    ui.adaptButton.click()
    assert "the clinic dataset folder does not exist" in harness.message_boxes[-1]["text"]
    assert widget._training is None and ui.adaptButton.text == "Adapt to clinic"


def test_adapted_model_path_never_takes_the_base_or_an_existing_file(tmp_path):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "CephLandmarks"))
    try:
        from CephLandmarksSlicer import adapt
    finally:
        sys.path.pop(0)
    from CephLandmarksLib.store.sidecar import SHIPPED_MODELS_DIR

    models = tmp_path / "Models"
    models.mkdir()
    base = models / "m-adapted-c.safetensors"  # adapting an adapted model to a clinic folder named "m"
    base.write_bytes(b"x")
    path = adapt.adaptedModelPath
    # a sidecar beside the base weights; the name of the weights a fine-tune would write beside it is taken
    assert path(models, models / "m.safetensors", tmp_path / "c") == models / "m-adapted-c-2.json"
    assert path(models, base, tmp_path / "my clinic") == models / "m-adapted-c-adapted-my_clinic.json"
    (models / "m-adapted-c-2.report").mkdir()  # a report left by an earlier model of that name takes the name too
    assert path(models, models / "m.safetensors", tmp_path / "c") == models / "m-adapted-c-3.json"
    elsewhere = tmp_path / "trained"  # a trained model's folder: its sidecar lies beside it, not among the user's
    assert path(models, elsewhere / "t.safetensors", tmp_path / "c") == elsewhere / "t-adapted-c.json"
    shipped = SHIPPED_MODELS_DIR / "isbi.safetensors"  # the extension's folder: the sidecar goes to the user's
    assert path(models, shipped, tmp_path / "c") == models / "isbi-adapted-c.json"
    elsewhere.mkdir()
    elsewhere.chmod(0o500)
    try:  # a folder that cannot be written: a whole model file among the user's, as before sidecars
        if not os.access(elsewhere, os.W_OK):  # (root writes anywhere)
            assert path(models, elsewhere / "t.safetensors", tmp_path / "c") == models / "t-adapted-c.safetensors"
    finally:
        elsewhere.chmod(0o700)
    info = {"adaptation": {"n_images": 20, "method": "none", "cv_before": {"mre_mm": 1.5}, "cv_after": {"mre_mm": 1.5}}}
    assert adapt.adaptationSummary(info, models / "m-adapted-site_2-3.safetensors") == (
        "Adapted to site_2 from 20 images (none): cross-validated MRE 1.50 \u2192 1.50 mm")
    assert adapt.adaptationSummary({"adaptation": {}}) == "" and adapt.adaptationSummary({}) == ""


# --- Adapt with the real `ceph-landmarks adapt` ------------------------------------------------------


def cliHasAdapt():
    r = subprocess.run([sys.executable, "-m", "CephLandmarksLib", "adapt", "--help"], capture_output=True,
                       cwd=Path(__file__).resolve().parents[1])
    return r.returncode == 0


needsAdapt = pytest.mark.skipif(not cliHasAdapt(), reason="ceph-landmarks adapt is not in this CLI yet")


@needsAdapt
def test_adapt_with_the_cli_refuses_too_few_images_in_one_message(harness, widget, tiny_model, tmp_path,
                                                                   generic_dataset):
    """The real command line: the module's arguments pass its parser, and its refusal (exit 2) comes
    as its one line in one message box, with no model left and nothing added to the list."""
    from CephLandmarksLib.annotations import clinic_dataset
    from CephLandmarksLib.annotations.datasets import load_generic
    from CephLandmarksLib.imaging.images import read_radiograph

    ui = widget.ui
    widget.logic.registerTrainedModel(str(tiny_model))
    widget.updateModelList(select=Path(tiny_model).resolve())
    small = tmp_path / "small"
    for sample in load_generic(generic_dataset)[:3]:
        clinic_dataset.add_case(small, sample.id, read_radiograph(sample.image_path).pixels, sample.landmarks_px, 0.5)
    ui.adaptClinicPathLineEdit.currentPath = str(small)
    count = ui.modelSelector.count
    ui.adaptButton.click()
    assert ui.adaptButton.text == "Cancel"
    harness.process_events(until=lambda: widget._training is None, timeout_s=240)
    assert [b["kind"] for b in harness.message_boxes] == ["error"]
    text = harness.message_boxes[0]["text"]
    assert text.startswith("Adapt failed: ") and "at least 10" in text and len(text.splitlines()) == 1, text
    assert "adapt finished (exit code 2)." in ui.trainLogTextEdit.toPlainText()
    assert ui.modelSelector.count == count and ui.adaptButton.text == "Adapt to clinic"
    for folder in (Path(widget.logic.registry().user_dir), Path(tiny_model).parent):
        assert not [p for p in folder.iterdir() if "adapted-small" in p.name]


@pytest.fixture(scope="module")
def clinic12(tiny_model, tmp_path_factory):
    """A 12-image clinic as the review loop makes one: the base model's own detections with Menton
    moved by the clinic's convention (+2 px along x), written by clinic_dataset.add_case."""
    from CephLandmarksLib.annotations import clinic_dataset
    from CephLandmarksLib.annotations.datasets import load_generic
    from CephLandmarksLib.imaging.images import read_radiograph
    from conftest import make_generic_dataset

    samples = load_generic(make_generic_dataset(tmp_path_factory.mktemp("clinic_source"), n_train=12, n_test=0,
                                                seed=5))
    out = tmp_path_factory.mktemp("detections")
    r = subprocess.run([sys.executable, "-m", "CephLandmarksLib", "detect", *[str(s.image_path) for s in samples],
                        "--model", str(tiny_model), "--spacing", "0.5", "--out-dir", str(out), "--no-overlay"],
                       capture_output=True, text=True, cwd=out)
    assert r.returncode == 0, r.stderr[-800:]
    folder = tmp_path_factory.mktemp("clinics") / "clinicA"
    for sample in samples:
        pixels = read_radiograph(sample.image_path).pixels
        landmarks = json.loads((out / f"{sample.id}.json").read_text())["landmarks"]
        points = np.array([truth if lm.get("missing") else (lm["x_px"], lm["y_px"])
                           for lm, truth in zip(landmarks, sample.landmarks_px, strict=True)], dtype=float)
        points[7, 0] += 2.0  # Me
        clinic_dataset.add_case(folder, sample.id, pixels, np.clip(points, 0.0, pixels.shape[::-1]), 0.5)
    return folder


@needsAdapt
def test_adapt_with_the_cli_lists_the_adapted_model_with_its_figures(harness, widget, tiny_model, clinic12):
    from CephLandmarksLib.store.registry import read_info

    ui = widget.ui
    base = Path(tiny_model).resolve()
    widget.logic.registerTrainedModel(str(base))
    widget.updateModelList(select=base)
    baseBytes = base.read_bytes()
    ui.adaptClinicPathLineEdit.currentPath = str(clinic12)
    progress = []
    ui.trainProgressBar.connect("valueChanged(int)", progress.append)
    ui.adaptButton.click()
    harness.process_events(until=lambda: widget._training is None, timeout_s=300)
    log = ui.trainLogTextEdit.toPlainText()
    assert harness.message_boxes == [] and harness.slot_errors == [], log[-2000:]
    out = base.parent / "tiny-adapted-clinicA.json"  # a sidecar beside the base weights (the CLI's rule)
    assert f"--out {out} --progress" in log
    assert ui.modelSelector.currentData == str(out.resolve())
    (entry,) = [e for e in widget.logic.availableModels() if str(e.path) == ui.modelSelector.currentData]
    assert entry.kind == "adapted" and ui.modelSelector.currentText == entry.label
    assert entry.label == f"{entry.name} (adapted, settings {out.name})"
    # the base weights untouched; a fine-tune alone writes weights, beside the sidecar
    assert base.read_bytes() == baseBytes
    assert entry.weights == (out.with_suffix(".safetensors") if entry.info["adaptation"]["method"] == "fine-tune"
                             else base)
    assert len({p for p in progress if 0 < p < 1000}) >= 5  # the CLI's stages moved the bar
    assert f"Adaptation report: {out.with_suffix('.report')}" in log
    record = read_info(out)["adaptation"]
    assert record["n_images"] == 12 and sorted(record["clinic_images"]) == [f"img{i:02d}" for i in range(12)]
    tooltip = ui.modelSelector.itemData(ui.modelSelector.currentIndex, sys.modules["qt"].Qt.ToolTipRole)
    assert (f"Adapted to clinicA from 12 images ({record['method']}): cross-validated MRE "
            f"{record['cv_before']['mre_mm']:.2f} \u2192 {record['cv_after']['mre_mm']:.2f} mm") in tooltip, tooltip
    assert (f"90 % regions {record['cv_before']['coverage_90_percent']:.0f} \u2192 "
            f"{record['cv_after']['coverage_90_percent']:.0f} %") in tooltip, tooltip
