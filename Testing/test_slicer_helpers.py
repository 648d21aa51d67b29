"""CephLandmarksSlicer.process, .dependencies, .commands and .metrics: the pure parts, without Slicer or Qt."""

import json
import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "CephLandmarks"))

from CephLandmarksSlicer import commands, dependencies, metrics, process  # noqa: E402

REQUIREMENTS = ROOT / "CephLandmarks" / "Resources" / "requirements.txt"


def test_progress_lines_of_detect_and_train():
    assert process.progressFromLine("[progress] 0.40 detecting on x.png") == 0.40
    assert process.progressFromLine("[progress] 0.25 training: epoch 3/10") == 0.25
    assert process.progressFromLine("epoch 3/10: 50%|#####     | 8/16") is None  # tqdm's bar: not parsed
    assert process.progressFromLine("loading the model") is None
    assert process.progressUpdate("[progress] 0.25 training: epoch 3/10") == (0.25, "training: epoch 3/10")
    assert process.progressUpdate("[progress] 1.00") == (1.0, "")
    assert process.progressUpdate("loading the model") is None


def test_failure_message_is_the_cli_error_line():
    lines = ["[progress] 0.10 reading x", "ceph-landmarks: error: cannot read image x: not a readable image file"]
    assert process.failureMessage(2, False, lines) == "cannot read image x: not a readable image file"
    assert process.failureMessage(-9, True, ["[progress] 0.2 detecting", "Traceback ...", "Killed"]) == (
        "the process stopped unexpectedly: Killed")
    assert process.failureMessage(1, False, []) == "the process failed (exit code 1)"


def test_display_command_reads_like_the_cli():
    line = process.cliCommand("/opt/Slicer/bin/PythonSlicer", "train", "--dataset", "/data/my set", "--epochs", 3)
    assert line[:4] == ["/opt/Slicer/bin/PythonSlicer", "-m", "CephLandmarksLib", "train"]
    assert process.displayCommand(line) == "ceph-landmarks train --dataset '/data/my set' --epochs 3"


def test_environment_puts_the_library_folder_first(monkeypatch):
    monkeypatch.setenv("PYTHONPATH", "/elsewhere")
    env = process.processEnvironment("/slicer/qt-scripted-modules")
    assert env["PYTHONPATH"].split(":")[0] == "/slicer/qt-scripted-modules" and env["PYTHONUNBUFFERED"] == "1"


def test_requirements_list_and_what_is_missing():
    requirements = dependencies.readRequirements(REQUIREMENTS)
    names = [name for name, _ in requirements]
    assert {"torch", "torchvision", "matplotlib", "tqdm", "safetensors", "SimpleITK"} <= set(names)
    slicerBundles = {"numpy", "scipy", "SimpleITK"}
    missing = dependencies.missingRequirements(requirements, lambda m: object() if m in slicerBundles else None)
    assert [name for name, _ in missing] == [n for n in names if n not in slicerBundles]


def test_torch_and_torchvision_go_through_pytorch_utils_or_pip_together():
    missing = [("torch", "torch>=2.1"), ("torchvision", "torchvision>=0.16"), ("tqdm", "tqdm>=4.60")]
    calls = []
    dependencies.installRequirements(missing, lambda reqs: calls.append(("pip", reqs)),
                                     lambda t, tv: calls.append(("pytorchutils", t, tv)))
    assert calls == [("pytorchutils", "torch>=2.1", "torchvision>=0.16"), ("pip", ["tqdm>=4.60"])]
    calls.clear()
    dependencies.installRequirements(missing, lambda reqs: calls.append(("pip", reqs)), None)
    assert calls == [("pip", ["torch>=2.1", "torchvision>=0.16"]), ("pip", ["tqdm>=4.60"])]


def test_training_command_lines_check_their_fields(tmp_path):
    dataset, model = tmp_path / "isbi", tmp_path / "m.safetensors"
    with pytest.raises(ValueError, match="Choose the dataset folder"):
        commands.trainingCommand("py", "train", None, str(model))
    with pytest.raises(ValueError, match="does not exist"):
        commands.trainingCommand("py", "train", str(dataset), str(model))
    dataset.mkdir()
    line = commands.trainingCommand("py", "train", str(dataset), str(model), 3, "320x416", "cpu")
    assert line == ["py", "-m", "CephLandmarksLib", "train", "--dataset", str(dataset), "--out", str(model),
                    "--epochs", "3", "--input-size", "320x416", "--device", "cpu", "--progress"]
    with pytest.raises(ValueError, match="The model file does not exist"):
        commands.trainingCommand("py", "calibrate", str(dataset), str(model))
    model.write_bytes(b"x")
    assert commands.trainingCommand("py", "calibrate", str(dataset), str(model))[3:] == [  # its sidecar, not itself
        "calibrate", "--model", str(model), "--dataset", str(dataset), "--out", str(tmp_path / "m.calibration.json"),
        "--progress"]
    with pytest.raises(ValueError, match="Train writes a weights file"):
        commands.trainingCommand("py", "train", str(dataset), str(tmp_path / "m.calibration.json"))
    with pytest.raises(ValueError, match="evaluation plots"):
        commands.trainingCommand("py", "evaluate", str(dataset), str(model))
    line = commands.trainingCommand("py", "evaluate", str(dataset), str(model), split="test2", outFolder="out")
    assert line[3:] == ["evaluate", "--model", str(model), "--dataset", str(dataset), "--split", "test2",
                        "--out", "out", "--device", "cpu", "--progress"]  # "auto" evaluates on the CPU


def test_calibrate_writes_a_sidecar_beside_the_weights_never_into_the_shipped_folder(tmp_path):
    """The sidecar Calibrate writes (the CLI's default): a sidecar model rewrites itself; a weights file gets
    <stem>.calibration.json beside it; a shipped model's sidecar goes into the per-user model folder."""
    from CephLandmarksLib.store.sidecar import SHIPPED_MODELS_DIR

    users = tmp_path / "user models"
    sidecar = commands.calibrationSidecar
    assert sidecar(tmp_path / "m.safetensors", users) == tmp_path / "m.calibration.json"
    assert sidecar(tmp_path / "m.clinicA.json", users) == tmp_path / "m.clinicA.json"
    assert sidecar(SHIPPED_MODELS_DIR / "isbi.safetensors", users) == users / "isbi.calibration.json"
    assert sidecar(SHIPPED_MODELS_DIR / "isbi.x.json", users) == users / "isbi.x.json"
    assert sidecar(SHIPPED_MODELS_DIR / "isbi.safetensors") == SHIPPED_MODELS_DIR / "isbi.calibration.json"


def test_a_failed_calibration_leaves_the_sidecar_as_it_was(tmp_path):
    path = tmp_path / "m.calibration.json"
    fresh = commands.CalibrationOutput(path)  # none before the run
    path.write_text("temperatures only")
    (tmp_path / ".m.calibration.json.x1.part").write_text("half")
    fresh.restore()
    assert sorted(tmp_path.iterdir()) == []
    path.write_text("the earlier calibration")
    earlier = commands.CalibrationOutput(path)
    path.write_text("temperatures only")
    earlier.restore()
    assert path.read_text() == "the earlier calibration" and sorted(tmp_path.iterdir()) == [path]


def test_metrics_summary_and_the_plots_of_this_run(tmp_path):
    assert metrics.metricsSummary(tmp_path) == ""
    (tmp_path / "metrics.json").write_text(json.dumps({"mre_mm": 1.234, "sdr": {"2.0": 80.0}, "ece": 0.0123}))
    assert metrics.metricsSummary(tmp_path) == "MRE 1.23 mm, SDR 2 mm 80.0 %, ECE 0.012"
    old, new = tmp_path / "old.png", tmp_path / "new.png"
    old.write_bytes(b"png")
    new.write_bytes(b"png")
    os.utime(old, (1000.0, 1000.0))
    assert metrics.plotsWrittenSince(tmp_path, 2000.0) == [str(new)]
    out = tmp_path / "saved"
    out.mkdir()
    metrics.copyResults([str(new)], tmp_path, out)
    assert sorted(p.name for p in out.iterdir()) == ["metrics.json", "new.png"]
