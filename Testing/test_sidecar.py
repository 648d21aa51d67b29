"""Calibration sidecars (store/sidecar.py): a recalibration writes kilobytes beside byte-identical
weights; a sidecar overrides the weights file's settings, the detection says which were used, and a
sidecar of other weights, or edited by hand, is refused with one line."""

import json
import subprocess

import pytest

from CephLandmarksLib import cli
from CephLandmarksLib.errors import CephError
from CephLandmarksLib.files import file_sha256
from CephLandmarksLib.store import registry, sidecar
from CephLandmarksLib.store.modelfile import load_model


def _run(capsys, *argv):
    code = cli.main([str(a) for a in argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def _git_blob(path) -> str:
    return subprocess.run(["git", "hash-object", str(path)], capture_output=True, text=True, check=True).stdout.strip()


@pytest.fixture
def calibrated(tiny_model, generic_dataset, tmp_path, capsys):
    """A copy of the tiny model recalibrated by `ceph-landmarks calibrate`: (weights, sidecar, blob before)."""
    weights = tmp_path / "m.safetensors"
    weights.write_bytes(tiny_model.read_bytes())
    blob = _git_blob(weights)
    code, _, err = _run(capsys, "calibrate", "--model", weights, "--dataset", generic_dataset)
    assert code == 0, err
    return weights, tmp_path / "m.calibration.json", blob


def test_recalibration_writes_a_sidecar_and_leaves_the_weights_byte_identical(calibrated):
    weights, side, blob = calibrated
    assert _git_blob(weights) == blob  # git would gain no new blob
    assert side.stat().st_size < 20_000 < weights.stat().st_size
    doc = json.loads(side.read_text())
    assert doc["weights_file"] == "m.safetensors"
    assert doc["weights_sha256"] == registry.read_model_info(weights)["weights_sha256"]
    assert set(doc["settings"]) <= set(sidecar.SETTINGS)
    assert {"temperatures", "ere_threshold_mm", "region_masses", "calibration"} <= set(doc["settings"])
    assert sorted(p.name for p in side.parent.iterdir()) == ["m.calibration.json", "m.safetensors"]  # no temp left


def test_the_sidecar_overrides_the_weights_and_the_detection_says_which(calibrated, generic_dataset, tmp_path,
                                                                         capsys):
    weights, side, _ = calibrated
    doc = json.loads(side.read_text())
    doc["settings"]["ere_threshold_mm"] = 7.25  # distinct from anything a fit gives
    side.write_text(json.dumps(sidecar.document(doc["weights_file"], doc["weights_sha256"], doc["settings"])))
    assert load_model(side).info.ere_threshold_mm == 7.25
    assert load_model(weights).info.ere_threshold_mm != 7.25
    for model, source in ((side, "sidecar"), (weights, "weights file")):
        out = tmp_path / source.replace(" ", "_")
        code, _, err = _run(capsys, "detect", generic_dataset / "img09.png", "--model", model, "--out-dir", out,
                            "--no-overlay")
        assert code == 0, err
        d = json.loads((out / "img09.json").read_text())
        assert d["model"]["settings"]["source"] == source
        assert (d["ere_threshold_mm"] == 7.25) == (source == "sidecar")
        assert d["model"]["sha256"] == file_sha256(weights)  # the weights are the same either way
    assert d["model"]["settings"] == {"source": "weights file"}


def test_a_sidecar_of_other_weights_is_refused_in_one_line(calibrated, generic_dataset, tmp_path, capsys):
    weights, side, _ = calibrated
    doc = json.loads(side.read_text())
    other = sidecar.document(doc["weights_file"], "0" * 64, doc["settings"])
    side.write_text(json.dumps(other))
    with pytest.raises(CephError, match="does not belong to m.safetensors"):
        registry.read_info(side)
    code, _, err = _run(capsys, "detect", generic_dataset / "img09.png", "--model", side, "--out-dir",
                        tmp_path / "out", "--no-overlay")
    assert code == 2 and err.count("\n") == 1 and "does not belong" in err and "Traceback" not in err
    assert not (tmp_path / "out" / "img09.json").exists()


def test_a_hand_edited_sidecar_is_damaged(calibrated):
    _, side, _ = calibrated
    doc = json.loads(side.read_text())
    doc["settings"]["ere_threshold_mm"] = 2.0  # without resealing
    side.write_text(json.dumps(doc))
    with pytest.raises(CephError, match="checksum"):
        load_model(side)


@pytest.mark.parametrize("change, words", [
    (lambda d: d["settings"].update(input_size=[32, 32]), "cannot change"),
    (lambda d: d["settings"].update(temperatures=[1.0] * 3), "'temperatures'"),
    (lambda d: d.update(weights_file="../x.safetensors"), "file name beside it"),
    (lambda d: d.update(format="ceph-landmarks-sidecar/9"), "not a model sidecar"),
])
def test_bad_sidecars_are_refused_naming_the_problem(change, words, calibrated):
    _, side, _ = calibrated
    doc = json.loads(side.read_text())
    change(doc)
    doc[sidecar.CHECKSUM_KEY] = sidecar._digest(doc)
    side.write_text(json.dumps(doc))
    with pytest.raises(CephError) as e:
        registry.read_info(side)
    assert words in str(e.value) and "\n" not in str(e.value)


def test_the_registry_lists_a_weights_file_and_its_sidecars_as_separate_entries(calibrated, tmp_path):
    weights, side, _ = calibrated
    (tmp_path / "notes.json").write_text("{}")  # another JSON file beside is not a model
    entries = registry.shipped_models(tmp_path)
    assert [e.path for e in entries] == [weights, side]
    assert entries[1].weights == weights and entries[0].weights is None
    assert "m.calibration.json" in entries[1].label and entries[0].label != entries[1].label
    user = registry.ModelRegistry(tmp_path / "user", shipped_dir=tmp_path / "none")
    trained = user.register_trained(side)
    assert trained.path == side.resolve() and [e.path for e in user.models()] == [side.resolve()]
    imported = user.import_model(side)  # the weights come along, the sidecar names the copy
    assert imported.weights.parent == tmp_path / "user" and imported.weights.is_file()
    assert load_model(imported.path).settings["source"] == "sidecar"


def test_adapting_by_offsets_writes_a_sidecar_beside_the_untouched_base(tiny_model, tmp_path, capsys):
    from test_adaptation import _clinic  # the synthetic clinic with a 2 mm Menton convention

    clinic = _clinic(tmp_path, model=tiny_model, menton_offset_mm=2.0)
    base = tmp_path / "base.safetensors"
    base.write_bytes(tiny_model.read_bytes())
    blob = _git_blob(base)
    out = tmp_path / "clinic.json"
    code, stdout, err = _run(capsys, "adapt", "--model", base, "--dataset", clinic, "--out", out,
                             "--methods", "none,offsets")
    assert code == 0, err
    assert stdout.strip() == str(out) and _git_blob(base) == blob and out.stat().st_size < 20_000
    assert not (tmp_path / "clinic.safetensors").exists()  # no fine-tune: no weights written
    loaded = load_model(out)
    assert loaded.settings["source"] == "sidecar" and loaded.path == str(base)
    assert loaded.info.adaptation["method"] == "offsets"
    assert loaded.info.convention_offsets_mm[7][0] == pytest.approx(2.0, abs=0.05)
    assert registry.read_model_info(base).get("convention_offsets_mm") is None
    elsewhere = tmp_path / "other" / "clinic.json"
    code, _, err = _run(capsys, "adapt", "--model", base, "--dataset", clinic, "--out", elsewhere)
    assert code == 2 and "beside its weights" in err and not elsewhere.parent.exists()
