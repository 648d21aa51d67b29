"""Which second stage a model runs by default (store.registry.default_refiner), the one answer for the CLI
and Slicer's Detect: the per-user model folder's refiner of that name when its header's
base_model.file_sha256 is the weights file's SHA-256 (a downloaded refiner, or Slicer's "Train second
stage" of a shipped model: the user's own choice); else the refiner beside the weights; a refiner of
other weights, or a file that is no refiner, is ignored with one warning line; a clinic adaptation
fitted without the refiner keeps the first stage.
The slow test runs `detect` on the tiny model: the user folder's refiner is run by default (its JSON
"refiner" record says so), `--refine none` still gives the first stage, and one for other weights is ignored."""

import hashlib
import json
import logging
import shutil

import numpy as np
import pytest
from safetensors.numpy import save_file
from test_registry import write_model

from CephLandmarksLib import cli
from CephLandmarksLib.files import file_sha256
from CephLandmarksLib.store import download, registry
from CephLandmarksLib.store.modelmeta import parse_and_check
from CephLandmarksLib.store.registry import REFINER_SUFFIX, default_refiner, read_model_info
from CephLandmarksLib.store.sidecar import write_sidecar


def header_refiner(path, base_sha256, name="base"):
    """A file with a refiner's header (torch-free; enough for the registry, which reads the header only)."""
    meta = {"format": registry.REFINER_FORMAT, "landmark_abbreviations": [f"A{i}" for i in range(19)],
            "base_model": {"name": name, "file_sha256": base_sha256}, "weights_sha256": "0" * 64}
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file({"w": np.zeros(2, dtype=np.float32)}, str(path), metadata={registry.REFINER_META_KEY: json.dumps(meta)})
    return path


def warnings_of(caplog):
    return [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]


@pytest.fixture
def folders(tmp_path):
    """(weights in a 'shipped' folder, the per-user model folder)."""
    model = write_model(tmp_path / "shipped" / "base.safetensors", name="base")
    user = tmp_path / "user"
    user.mkdir()
    return model, user


def test_the_header_keys_are_the_refiner_files():
    from CephLandmarksLib.store import refinerfile

    assert (registry.REFINER_META_KEY, registry.REFINER_FORMAT) == (refinerfile.META_KEY, refinerfile.FORMAT)


def test_the_user_folders_refiner_for_these_weights_first_then_beside(folders, caplog):
    model, user = folders
    own = user / ("base" + REFINER_SUFFIX)
    assert default_refiner(model, user_dir=user) is None
    # a refiner of other weights in the user folder: ignored, one warning line, never an error
    header_refiner(own, "0" * 64)
    with caplog.at_level(logging.WARNING):
        assert default_refiner(model, user_dir=user) is None
    [warning] = warnings_of(caplog)
    assert "\n" not in warning and str(own) in warning and "other weights" in warning and "first stage" in warning
    # trained for these very weights: taken
    header_refiner(own, file_sha256(model))
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        assert default_refiner(model, user_dir=user) == own
    assert warnings_of(caplog) == []
    # the user's own comes before the one beside the weights, which runs when the user's is of other weights
    beside = header_refiner(model.with_name("base" + REFINER_SUFFIX), "1" * 64)
    assert default_refiner(model, user_dir=user) == own
    header_refiner(own, "0" * 64)
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        assert default_refiner(model, user_dir=user) == beside
    [warning] = warnings_of(caplog)
    assert "other weights" in warning and "beside the weights runs instead" in warning
    own.unlink()
    assert default_refiner(model, user_dir=user) == beside
    beside.unlink()
    header_refiner(own, file_sha256(model))
    # other weights of the same file name (a different model called base.safetensors): not taken
    other = write_model(model.parent.parent / "elsewhere" / "base.safetensors", name="base", seed=1)
    assert default_refiner(other, user_dir=user) is None


def test_the_user_folder_comes_from_the_environment(folders, monkeypatch):
    model, user = folders
    own = header_refiner(user / ("base" + REFINER_SUFFIX), file_sha256(model))
    monkeypatch.setenv(download.USER_DIR_ENV, str(user))
    assert default_refiner(model) == own
    monkeypatch.setenv(download.USER_DIR_ENV, str(user.parent / "empty"))
    assert default_refiner(model) is None


def test_a_file_that_is_no_refiner_is_ignored_with_a_warning(folders, caplog):
    model, user = folders
    for body in (b"", b"not a refiner at all", (2**62).to_bytes(8, "little") + b"{}"):
        (user / ("base" + REFINER_SUFFIX)).write_bytes(body)
        caplog.clear()
        with caplog.at_level(logging.WARNING):
            assert default_refiner(model, user_dir=user) is None
        [warning] = warnings_of(caplog)
        assert "is not a refiner file" in warning and "\n" not in warning
    write_model(user / ("base" + REFINER_SUFFIX))  # a model's header, not a refiner's
    assert default_refiner(model, user_dir=user) is None


def test_a_sidecar_and_an_adaptation_follow_the_weights(folders):
    model, user = folders
    own = header_refiner(user / ("base" + REFINER_SUFFIX), file_sha256(model))
    meta = parse_and_check(json.dumps(read_model_info(model)))
    sidecar = write_sidecar(model.with_name("base.calibration.json"), model, meta)
    assert default_refiner(sidecar, user_dir=user) == own
    # a clinic adaptation fitted without this refiner keeps the first stage; fitted with it, runs it
    without = write_sidecar(model.with_name("base.clinic.json"), model,
                            dict(meta, adaptation={"method": "temperatures", "refiner_sha256": "0" * 64}))
    assert default_refiner(without, user_dir=user) is None
    assert default_refiner(without, adapted_choice=False, user_dir=user) == own  # adapted from: not binding
    fitted = write_sidecar(model.with_name("base.clinic2.json"), model,
                           dict(meta, adaptation={"method": "temperatures", "refiner_sha256": file_sha256(own)}))
    assert default_refiner(fitted, user_dir=user) == own


def test_the_weights_are_hashed_once_while_they_stay_the_same(folders, monkeypatch):
    model, user = folders
    header_refiner(user / ("base" + REFINER_SUFFIX), file_sha256(model))
    hashed = []
    real = registry.file_sha256
    monkeypatch.setattr(registry, "file_sha256", lambda p: hashed.append(p.name) or real(p))
    for _ in range(3):
        assert default_refiner(model, user_dir=user) is not None
    assert hashed.count("base.safetensors") == 1
    write_model(model, name="base", seed=2)  # new weights: hashed again, and the old refiner no longer fits
    assert default_refiner(model, user_dir=user) is None
    assert hashed.count("base.safetensors") == 2


# --- detect on the tiny model ---------------------------------------------------------------------------


def real_refiner(path, model, base_sha256, min_inside_mass=0.0):
    """A refiner of random weights for `model`'s landmarks, trained (its header says) behind base_sha256."""
    from test_refine_detect import abbreviations

    from CephLandmarksLib.network.refiner import RefinerNet
    from CephLandmarksLib.store.refinerfile import RefinerInfo, save_refiner

    names = abbreviations(model)
    net = RefinerNet(len(names), (8, 16, 16, 16))
    save_refiner(path, net, RefinerInfo(list(names), crop_size=32, crop_mm_per_px=0.25, channels=[8, 16, 16, 16],
                                        temperatures=[0.2] * len(names), min_inside_mass=min_inside_mass,
                                        base_model={"name": "tiny", "file_sha256": base_sha256}))
    return path


@pytest.mark.slow
def test_detect_runs_the_user_folders_refiner_for_the_shipped_weights(tiny_model, generic_dataset, tmp_path,
                                                                      monkeypatch, capsys, caplog):
    shipped = tmp_path / "shipped"
    shipped.mkdir()
    model = shipped / "tiny.safetensors"
    shutil.copyfile(tiny_model, model)
    user = tmp_path / "user"
    user.mkdir()
    monkeypatch.setenv(download.USER_DIR_ENV, str(user))
    monkeypatch.setattr(cli, "DEFAULT_MODEL_DIR", shipped)
    image = str(generic_dataset / "img09.png")
    own = user / ("tiny" + REFINER_SUFFIX)

    def detect(out, *extra):
        code = cli.main(["detect", image, "--out-dir", str(tmp_path / out), "--no-overlay", *extra])
        captured = capsys.readouterr()
        assert code == 0, captured.err
        return json.loads((tmp_path / out / "img09.json").read_text()), captured.err

    # a refiner of other weights in the user folder: one warning line (stderr, through logging), the first stage
    real_refiner(own, model, "0" * 64)
    with caplog.at_level(logging.WARNING):
        record, err = detect("other")
    assert "refiner" not in record and not any("refined" in lm for lm in record["landmarks"])
    [warning] = warnings_of(caplog)
    assert str(own) in warning and "other weights" in warning and "first stage runs" in warning
    caplog.clear()
    # one trained behind these weights: run by default (the default model, and --model naming it)
    real_refiner(own, model, hashlib.sha256(model.read_bytes()).hexdigest())
    for out, extra in (("mine", ()), ("named", ("--model", str(model)))):
        record, err = detect(out, *extra)
        assert record["refiner"]["file"] == own.name and record["refiner"]["sha256"] == file_sha256(own), err
        assert warnings_of(caplog) == []
    # --refine none: the first stage alone
    record, _err = detect("none", "--refine", "none")
    assert "refiner" not in record
