"""The second stage in the Slicer helpers, without Slicer or Qt (and the export under slicer-core's MRML):
which `--refine` a Detect passes (secondStage.refineArguments: the library's default_refiner, asked with
Slicer's per-user model folder, named explicitly), where "Train second stage" writes and what
it refuses (refinerOutput, refinerCommand), its progress from train-refiner's epoch records, and the CLI
JSON export of a detection with the second stage (the "refiner" record, each point's "refined", none on a
corrected point)."""

import json
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "CephLandmarks"))

from CephLandmarksLib.store.registry import REFINER_SUFFIX, refiner_beside  # noqa: E402
from CephLandmarksLib.store.sidecar import SHIPPED_MODELS_DIR  # noqa: E402
from CephLandmarksSlicer import commands, secondStage  # noqa: E402

SHIPPED = SHIPPED_MODELS_DIR / "isbi2015-384x480.safetensors"


@pytest.fixture
def user(tmp_path):
    """A per-user model folder, a user model in it and a dataset folder."""
    models = tmp_path / "Models"
    models.mkdir()
    model = models / "mine.safetensors"
    model.write_bytes(b"weights")
    (tmp_path / "data").mkdir()
    return models, model, tmp_path / "data"


def test_detect_refine_arguments(user, tmp_path, caplog):
    from test_refiner_default import header_refiner
    from test_registry import write_model

    from CephLandmarksLib.files import file_sha256

    models, _model, _data = user
    model = write_model(models / "mine.safetensors", name="mine")
    assert secondStage.refineArguments(model, False, models) == ["--refine", "none"]
    assert secondStage.refineArguments(SHIPPED, False, models) == ["--refine", "none"]
    # on: the library's answer, named, so that the child process never looks in another folder
    assert secondStage.refineArguments(model, True, models) == ["--refine", "none"]
    refiner_beside(model).write_bytes(b"refiner")  # beside the weights: taken as it is (loading checks it)
    assert secondStage.refineArguments(model, True, models) == ["--refine", str(refiner_beside(model))]
    # weights elsewhere (as the shipped ones): the refiner of that name in the per-user folder, if it was
    # trained for these very weights
    shipped = write_model(tmp_path / "shipped" / "base.safetensors", name="base")
    own = models / ("base" + REFINER_SUFFIX)
    assert secondStage.refineArguments(shipped, True, models) == ["--refine", "none"]
    header_refiner(own, "0" * 64)
    assert secondStage.refineArguments(shipped, True, models) == ["--refine", "none"]
    assert "other weights" in caplog.text
    header_refiner(own, file_sha256(shipped))
    assert secondStage.refineArguments(shipped, True, models) == ["--refine", str(own)]
    assert secondStage.refineArguments("", True, models) == []
    assert secondStage.refineArguments(models / "broken.json", True, models) == []  # detect names the problem


def test_detect_asks_the_library(user, monkeypatch):
    from CephLandmarksLib.store import registry

    models, model, _data = user
    asked = []
    monkeypatch.setattr(registry, "default_refiner",
                        lambda path, user_dir=None: asked.append((path, user_dir)) or Path("/x/chosen.safetensors"))
    assert secondStage.refineArguments(model, True, models) == ["--refine", "/x/chosen.safetensors"]
    assert asked == [(model, models)]


def test_the_refiner_goes_beside_the_model_and_never_into_the_shipped_folder(user):
    models, model, _data = user
    assert secondStage.refinerOutput(model, models) == models / ("mine" + REFINER_SUFFIX)
    assert secondStage.refinerOutput(SHIPPED, models) == models / ("isbi2015-384x480" + REFINER_SUFFIX)
    assert secondStage.refinerOutput(SHIPPED, models).parent != SHIPPED_MODELS_DIR


def test_a_sidecar_of_shipped_weights_trains_into_the_user_folder(user):
    from CephLandmarksLib.files import file_sha256
    from CephLandmarksLib.store.modelmeta import parse_and_check
    from CephLandmarksLib.store.sidecar import write_sidecar

    if not SHIPPED.is_file():
        pytest.skip("no shipped model")
    from safetensors import safe_open

    with safe_open(str(SHIPPED), "np") as f:
        meta = parse_and_check(f.metadata().get("ceph_landmarks"))
    models, _model, _data = user
    sidecar = write_sidecar(models / "isbi2015-384x480.calibration.json", SHIPPED, meta)
    own = models / ("isbi2015-384x480" + REFINER_SUFFIX)
    assert secondStage.refinerOutput(sidecar, models) == own
    # Detect: the user's refiner trained for these weights, before any beside the shipped weights (this
    # checkout may have one: it is not in git); a clinic adaptation fitted without it runs without it
    from test_refiner_default import header_refiner

    header_refiner(own, file_sha256(SHIPPED))
    assert secondStage.refineArguments(sidecar, True, models) == ["--refine", str(own)]
    adapted = dict(meta, adaptation={"method": "temperatures", "refiner_sha256": "0" * 64})
    adapted = write_sidecar(models / "isbi2015-384x480-adapted.json", SHIPPED, adapted)
    assert secondStage.refineArguments(adapted, True, models) == ["--refine", "none"]
    withIt = dict(meta, adaptation={"method": "temperatures", "refiner_sha256": file_sha256(own)})
    withIt = write_sidecar(models / "isbi2015-384x480-adapted2.json", SHIPPED, withIt)
    assert secondStage.refineArguments(withIt, True, models) == ["--refine", str(own)]


def test_train_second_stage_command_line_parses_as_train_refiner(user):
    from CephLandmarksLib.cli import build_parser

    models, model, data = user
    line, output = secondStage.refinerCommand("/slicer/PythonSlicer", str(data), str(model), models, 3)
    out = models / ("mine" + REFINER_SUFFIX)
    assert line == ["/slicer/PythonSlicer", "-m", "CephLandmarksLib", "train-refiner", "--model", str(model),
                    "--dataset", str(data), "--out", str(out), "--epochs", "3", "--progress"]
    assert output.path == out and output.epochs == 3
    a = build_parser().parse_args(line[3:])  # the library's own parser takes it
    assert (a.model, a.dataset, a.out, a.epochs, a.resume, a.progress) == (str(model), str(data), str(out), 3,
                                                                           False, True)
    (output.workFolder / "last.pt").parent.mkdir()
    (output.workFolder / "last.pt").write_bytes(b"checkpoint")
    line, _output = secondStage.refinerCommand("py", str(data), str(model), models, 3, resume=True)
    assert line[-1] == "--resume" and build_parser().parse_args(line[3:]).resume


def test_train_second_stage_refuses_bad_input_and_overwriting(user):
    models, model, data = user
    refuse = lambda *a, **k: pytest.raises(ValueError, match=k.pop("match"))  # noqa: E731
    with refuse(match="Choose the dataset folder"):
        secondStage.refinerCommand("py", None, str(model), models)
    with refuse(match="does not exist"):
        secondStage.refinerCommand("py", str(data / "nope"), str(model), models)
    for missing in (None, "", "download:isbi2015-ensemble"):
        with refuse(match="Choose an installed model"):
            secondStage.refinerCommand("py", str(data), missing, models)
    with refuse(match="model file does not exist"):
        secondStage.refinerCommand("py", str(data), str(models / "gone.safetensors"), models)
    with refuse(match="Nothing to resume"):
        secondStage.refinerCommand("py", str(data), str(model), models, resume=True)
    out = models / ("mine" + REFINER_SUFFIX)
    out.write_bytes(b"a trained refiner")
    with refuse(match="tick Resume"):
        secondStage.refinerCommand("py", str(data), str(model), models)
    out.unlink()
    secondStage.workFolder(out).mkdir()
    (secondStage.workFolder(out) / "last.pt").write_bytes(b"checkpoint")
    with refuse(match="last.pt exists: tick Resume"):
        secondStage.refinerCommand("py", str(data), str(model), models)


def test_progress_from_train_refiner_epoch_records(tmp_path):
    output = secondStage.RefinerOutput(tmp_path / "m.refiner.safetensors", 4)
    record = {"epoch": 3, "train_loss": 4.2, "val_loss": 4.1, "val_mre_mm": 1.3, "seconds": 12.0}
    assert output.fraction(json.dumps(record)) == 0.75
    assert output.fraction(json.dumps(dict(record, epoch=9))) == 1.0
    assert output.fraction("26 training images; 20 held out (the model's)") is None
    assert output.fraction("{not json") is None and output.fraction('{"loss": 1}') is None
    # once `[progress]` lines come (--progress), they alone move the bar
    assert output.fraction("[progress] 0.40 training") == 0.40
    assert output.fraction(json.dumps(record)) is None


def test_leftovers_of_a_cancelled_run_go_and_the_checkpoints_stay(tmp_path):
    """atomic_write names its temporary file after the first 32 characters of the target's name."""
    from CephLandmarksLib.files import atomic_write

    out = tmp_path / ("isbi2015-384x480" + REFINER_SUFFIX)
    assert len(out.name) > 32

    def interrupted(tmp):
        Path(tmp).write_bytes(b"half")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        atomic_write(out, interrupted)  # it cleans up after itself; a killed process cannot:
    part = tmp_path / f".{out.name[:32]}.x1y2.part"
    part.write_bytes(b"half")
    secondStage.workFolder(out).mkdir()
    (secondStage.workFolder(out) / "last.pt").write_bytes(b"checkpoint")
    secondStage.RefinerOutput(out, 3).removeLeftovers()
    assert not part.exists() and (secondStage.workFolder(out) / "last.pt").is_file()


def test_calibration_restore_removes_the_temporary_of_a_long_sidecar_name(tmp_path):
    sidecar = tmp_path / "isbi2015-384x480.calibration.json"
    saved = commands.CalibrationOutput(sidecar)
    part = tmp_path / f".{sidecar.name[:32]}.abc.part"
    part.write_text("half")
    saved.restore()
    assert not part.exists() and not sidecar.exists()


# --- the export (slicer-core's MRML) ----------------------------------------------------------------------


def test_cli_json_export_carries_the_second_stage_and_a_corrected_point_is_not_refined():
    slicer = pytest.importorskip("slicer")
    if not hasattr(slicer, "vtkMRMLScene"):
        pytest.skip("slicer-core (MRML) is not installed")
    from slicer_fixtures import headlessScene, makeVolume
    from test_slicer_refine import SIZE, SPACING, refinedDetection

    from CephLandmarksLib.detection.result import Detection
    from CephLandmarksSlicer.exports import cliJson
    from CephLandmarksSlicer.markups import createLandmarksNode
    from CephLandmarksSlicer.review import reviewedDetection

    scene = headlessScene()
    volume = makeVolume(scene, np.zeros((SIZE[1], SIZE[0]), dtype=np.float32), SPACING)
    d = refinedDetection()
    d.combined.refined[[2, 5]] = False  # two points kept their coarse place
    for lm, refined in zip(d.landmarks, d.combined.refined, strict=True):
        lm.refined = bool(refined)
    d.refiner = {"file": "synthetic.refiner.safetensors", "sha256": "1" * 64, "base_model": {"name": "synthetic"},
                 "crop_mm": 6.0, "crop_mm_per_px": 0.25, "min_inside_mass": 0.5, "refined": 17,
                 "outside_crop": [d.landmarks[2].abbreviation, d.landmarks[5].abbreviation]}
    cli = d.to_json_dict()  # what `ceph-landmarks detect` writes
    node = createLandmarksNode(scene, d, volume)

    out = cliJson(node, n=50)
    assert out["refiner"] == cli["refiner"] == d.refiner
    assert [lm["refined"] for lm in out["landmarks"]] == [lm["refined"] for lm in cli["landmarks"]]
    assert [lm["refined"] for lm in out["landmarks"]].count(False) == 2
    assert {k for k in cli["landmarks"][0] if k != "flag_reasons"} <= set(out["landmarks"][0])

    # drag point 8: it is the user's now, not the fine map's
    moved = 8
    position = np.array(node.GetNthControlPointPosition(moved)) + [1.5, 0.0, 0.0]
    node.SetNthControlPointPosition(moved, *position)
    out = cliJson(node, n=50)
    lm = out["landmarks"][moved]
    assert lm["edited"] is True and "refined" not in lm
    assert out["measurements"]["corrected_landmarks"] == [d.landmarks[moved].abbreviation]
    assert all(o["refined"] == c["refined"] for i, (o, c) in enumerate(zip(out["landmarks"], cli["landmarks"],
                                                                            strict=True)) if i != moved)
    assert out["refiner"] == d.refiner
    # the reviewed detection (the report's and the clinic dataset's) says the same
    reviewed = reviewedDetection(node, n=50, measurements=False)
    assert isinstance(reviewed, Detection) and reviewed.refiner == d.refiner
    assert reviewed.landmarks[moved].refined is None
    assert [lm.refined for i, lm in enumerate(reviewed.landmarks) if i != moved] == \
        [bool(r) for i, r in enumerate(d.combined.refined) if i != moved]
    back = reviewed.to_json_dict()
    assert back["refiner"] == d.refiner and "refined" not in back["landmarks"][moved]


def test_cli_json_export_of_a_first_stage_detection_has_no_second_stage():
    slicer = pytest.importorskip("slicer")
    if not hasattr(slicer, "vtkMRMLScene"):
        pytest.skip("slicer-core (MRML) is not installed")
    from slicer_fixtures import headlessScene, makeVolume, syntheticDetection

    from CephLandmarksSlicer.exports import cliJson
    from CephLandmarksSlicer.markups import createLandmarksNode

    scene = headlessScene()
    volume = makeVolume(scene, np.zeros((240, 200), dtype=np.float32), (0.1, 0.1))
    out = cliJson(createLandmarksNode(scene, syntheticDetection(), volume), n=50)
    assert "refiner" not in out and not any("refined" in lm for lm in out["landmarks"])
