"""The model registry: header checks without torch, shipped/imported/trained lists, the manifest, `models`."""

import json
import logging
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from safetensors import safe_open
from safetensors.numpy import save_file

from CephLandmarksLib import cli
from CephLandmarksLib.errors import CephError
from CephLandmarksLib.files import file_sha256
from CephLandmarksLib.store import registry
from CephLandmarksLib.store.modelmeta import seal
from CephLandmarksLib.store.registry import FORMAT, META_KEY, ModelRegistry, read_model_info

REPO = Path(__file__).resolve().parent.parent


def write_model(path, name="tiny", version="1", seed=0, **extra):
    """A tiny valid model file as far as the registry is concerned: one tensor and our metadata
    (validated and checksummed as save_model writes it; a given `format` is written as it is)."""
    meta = {"name": name, "version": version, "format": FORMAT, "input_size": [64, 64],
            "landmark_names": [f"L{i}" for i in range(19)], "landmark_abbreviations": [f"A{i}" for i in range(19)],
            "temperatures": [1.0] * 19, "ere_threshold_mm": 1.5, "refine_radius": 1, "weights_sha256": "0" * 64,
            "metrics": {}, "calibration": {}, "training": {}}
    meta.update(extra)
    if "format" not in extra:
        meta = seal(meta)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file({"w": np.arange(4, dtype=np.float32) + seed}, str(path), metadata={META_KEY: json.dumps(meta)})
    return path


def warnings_of(caplog):
    return [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]


@pytest.fixture
def shipped(tmp_path):
    folder = tmp_path / "shipped"
    write_model(folder / "base.safetensors", name="base", version="2.0",
                calibration={"holdout_mre_mm": 1.234})
    return folder


# read_model_info


def test_shipped_model_is_listed_with_its_header_metadata():
    files = sorted(p for p in registry.shipped_models_dir().glob("*.safetensors")
                   if not p.name.endswith(registry.REFINER_SUFFIX))  # the second stage beside it is no model
    if not files:
        pytest.skip("no model shipped in Resources/Models")
    assert registry.shipped_models_dir() == REPO / "Resources" / "Models"
    with safe_open(str(files[0]), framework="numpy") as f:  # the reference reader
        meta = json.loads(f.metadata()[META_KEY])
    entries = ModelRegistry(REPO / "no-such-user-dir").models()
    assert [e.path for e in entries] == files and entries[0].kind == "shipped"
    e = entries[0]
    assert (e.name, e.version) == (meta["name"], meta["version"]) and e.name == "isbi2015-384x480"
    assert e.label == "isbi2015-384x480 (shipped)" and e.sha256 is None
    assert e.tooltip.startswith(f"{meta['name']} {meta['version']}, 19 landmarks")
    assert "MRE" in e.tooltip and len(e.tooltip.splitlines()) == 1
    assert registry.default_model_path() == files[0] == cli.default_model_path()


def test_read_model_info_returns_the_metadata(tmp_path):
    path = write_model(tmp_path / "m.safetensors", name="m", version="3", metrics={"mre_mm": 1.5})
    info = read_model_info(path)
    assert info["name"] == "m" and info["version"] == "3" and info["format"] == FORMAT
    assert info["metrics"] == {"mre_mm": 1.5} and len(info["landmark_names"]) == 19


def _bad_files(tmp_path):
    good = write_model(tmp_path / "good.safetensors").read_bytes()
    (n,) = struct.unpack("<Q", good[:8])
    cases = {
        "missing": (None, "not found"),
        "short": (good[:5], "truncated header"),
        "cut-in-header": (good[: 8 + n // 2], "truncated"),
        "cut-in-weights": (good[:-3], "truncated"),
        "trailing-bytes": (good + b"xx", "damaged"),
        "png": (b"\x89PNG\r\n\x1a\n" + bytes(200), "not a safetensors file"),
        "text": (b"hello world, this is not a model file at all" * 10, "not a safetensors file"),
        "huge-header": (struct.pack("<Q", 50 * 2**30) + b"{}" + bytes(100), "absurd header length"),
    }
    plain = tmp_path / "plain.safetensors"
    save_file({"w": np.zeros(2, np.float32)}, str(plain), metadata={"other": "x"})
    cases["no-metadata"] = (plain.read_bytes(), "not a CephLandmarks model")
    save_file({"w": np.zeros(2, np.float32)}, str(plain))
    cases["no-metadata-at-all"] = (plain.read_bytes(), "not a CephLandmarks model")
    cases["wrong-format"] = (write_model(tmp_path / "wf.safetensors", format="ceph-landmarks-model/99").read_bytes(),
                             "unsupported model format")
    save_file({"w": np.zeros(2, np.float32)}, str(plain), metadata={META_KEY: "{not json"})
    cases["bad-json"] = (plain.read_bytes(), "not valid JSON")
    return cases


def test_read_model_info_rejects_bad_files_with_one_line(tmp_path):
    for label, (data, needle) in _bad_files(tmp_path).items():
        path = tmp_path / f"{label}.safetensors"
        if data is not None:
            path.write_bytes(data)
        with pytest.raises(CephError) as e:
            read_model_info(path)
        message = str(e.value)
        assert needle in message and str(path) in message and "\n" not in message, (label, message)


def test_read_model_info_does_not_read_a_huge_declared_header(tmp_path, monkeypatch):
    path = tmp_path / "huge.safetensors"
    path.write_bytes(struct.pack("<Q", registry.MAX_HEADER_BYTES - 1) + b"{" + bytes(10))  # under the cap
    with pytest.raises(CephError, match="truncated"):  # refused from the file size, before reading
        read_model_info(path)


def test_registry_works_without_torch_or_safetensors(shipped, tmp_path):
    user = tmp_path / "user"
    reg = ModelRegistry(user, shipped_dir=shipped)
    reg.import_model(write_model(tmp_path / "a.safetensors", name="a"))
    reg.register_trained(write_model(tmp_path / "t.safetensors", name="t"))
    code = (
        "import sys; sys.modules['torch'] = None; sys.modules['safetensors'] = None\n"
        "from CephLandmarksLib import cli\nfrom CephLandmarksLib.store import registry\n"
        f"reg = registry.ModelRegistry({str(user)!r}, shipped_dir={str(shipped)!r})\n"
        "print([(e.kind, e.name) for e in reg.models()])\n"
        f"reg.import_model({str(tmp_path / 'a.safetensors')!r})\n"
        f"cli.DEFAULT_MODEL_DIR = registry.Path({str(shipped)!r})\n"
        f"sys.exit(cli.main(['models', '--user-dir', {str(user)!r}]))\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=60)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0] == "[('shipped', 'base'), ('imported', 'a'), ('trained', 't')]"
    assert [line.split("\t")[0] for line in lines[1:]] == ["base (shipped)", "a (imported)", "t (trained)"]


# the user registry


def test_import_copies_records_and_is_idempotent(shipped, tmp_path):
    src = write_model(tmp_path / "src" / "mine.safetensors", name="mine", version="7")
    sha = file_sha256(src)
    user = tmp_path / "user"
    reg = ModelRegistry(user, shipped_dir=shipped)
    entry = reg.import_model(src)
    target = user / f"mine-{sha[:12]}.safetensors"
    assert entry.path == target and entry.kind == "imported" and entry.sha256 == sha
    assert (entry.name, entry.version, entry.label) == ("mine", "7", "mine (imported)")
    assert target.read_bytes() == src.read_bytes()
    manifest = json.loads((user / "models.json").read_text())
    assert manifest == {"format": registry.MANIFEST_FORMAT, "imported": {target.name: sha}, "trained": {}}
    before = ((user / "models.json").read_text(), (user / "models.json").stat().st_mtime_ns, target.stat().st_mtime_ns)
    assert reg.import_model(src) == entry
    assert reg.import_model(target) == entry  # importing our own copy does not add a second suffix
    after = ((user / "models.json").read_text(), (user / "models.json").stat().st_mtime_ns, target.stat().st_mtime_ns)
    assert after == before
    assert sorted(p.name for p in user.iterdir()) == sorted(["models.json", target.name])
    assert [(e.kind, e.name) for e in reg.models()] == [("shipped", "base"), ("imported", "mine")]


def test_import_refuses_a_bad_file_and_writes_nothing(tmp_path):
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"not a model")
    reg = ModelRegistry(tmp_path / "user", shipped_dir=tmp_path / "none")
    with pytest.raises(CephError, match="not a safetensors file"):
        reg.import_model(bad)
    assert not (tmp_path / "user").exists() or not any((tmp_path / "user").iterdir())


def test_register_trained_in_place_and_after_recalibration(shipped, tmp_path, caplog):
    user = tmp_path / "user"
    reg = ModelRegistry(user, shipped_dir=shipped)
    trained = write_model(tmp_path / "work" / "ft.safetensors", name="ft", version="1",
                          metrics={"mre_mm": 1.87, "sdr": {"2.0": 71.05}},
                          training={"config": {"dataset": "/data/clinic-a"}, "epochs_run": 12,
                                    "init_model": {"name": "isbi2015-384x480"}})
    entry = reg.register_trained(trained)
    assert entry.path == trained.resolve() and entry.kind == "trained" and entry.label == "ft (trained)"
    first, second = entry.tooltip.splitlines()
    assert first == "ft 1, 19 landmarks, input 64x64, MRE 1.87 mm, SDR 2 mm 71.0 %"
    assert second == "Trained: fine-tuned from isbi2015-384x480 on clinic-a, 12 epochs"
    assert json.loads((user / "models.json").read_text())["trained"] == {str(trained.resolve()): file_sha256(trained)}
    assert [e.kind for e in reg.models()] == ["shipped", "trained"] and not warnings_of(caplog)

    write_model(trained, name="ft", version="1", calibration={"holdout_mre_mm": 1.5})  # recalibrated in place
    caplog.clear()
    assert [e.kind for e in reg.models()] == ["shipped"]  # changed since recorded: left out, with a warning
    assert len(warnings_of(caplog)) == 1 and "changed" in warnings_of(caplog)[0]
    again = reg.register_trained(trained)
    assert again.sha256 == file_sha256(trained) != entry.sha256
    caplog.clear()
    assert [e.path for e in reg.models()][1:] == [trained.resolve()] and not warnings_of(caplog)
    assert len(json.loads((user / "models.json").read_text())["trained"]) == 1


def test_adapted_models_are_their_own_kind(shipped, tmp_path):
    """A user model with a non-empty "adaptation" (what `adapt` writes) is "adapted", registered in place
    or imported; it is stored like the others, and an empty record is no adaptation."""
    user = tmp_path / "user"
    reg = ModelRegistry(user, shipped_dir=shipped)
    base_training = {"config": {"dataset": "/data/isbi2015"}, "epochs_run": 40}
    adapted = write_model(tmp_path / "work" / "base-adapted-clinicA.safetensors", name="base", version="2.0",
                          training=base_training, adaptation={"clinic": "clinicA", "n_images": 12})
    entry = reg.register_trained(adapted)
    assert "adapted" in registry.KINDS
    assert (entry.kind, entry.label) == ("adapted", "base (adapted)")
    assert entry.tooltip.splitlines()[1] == "Base model trained: on isbi2015, 40 epochs"
    assert json.loads((user / "models.json").read_text())["trained"] == {str(adapted.resolve()): file_sha256(adapted)}
    copy = reg.import_model(adapted)
    assert (copy.kind, copy.label) == ("adapted", "base (adapted)")
    plain = reg.register_trained(write_model(tmp_path / "work" / "t.safetensors", name="t", adaptation={}))
    assert plain.kind == "trained"
    listed = [(e.kind, e.path) for e in reg.models()]
    assert listed == [("shipped", shipped / "base.safetensors"), ("adapted", copy.path),
                      ("adapted", adapted.resolve()), ("trained", plain.path)]
    assert [e.label for e in reg.models()][1:3] == [f"base (adapted: {copy.path.name})",
                                                    f"base (adapted: {adapted.name})"]
    assert reg.forget(adapted) is True and adapted.is_file()  # registered in place: the file is left alone
    assert reg.forget(copy.path) is True and not copy.path.exists()  # imported: our copy goes


def test_forget(shipped, tmp_path):
    user = tmp_path / "user"
    reg = ModelRegistry(user, shipped_dir=shipped)
    imported = reg.import_model(write_model(tmp_path / "a.safetensors", name="a"))
    trained = reg.register_trained(write_model(tmp_path / "t.safetensors", name="t"))
    assert reg.forget(tmp_path / "unknown.safetensors") is False
    assert reg.forget(shipped / "base.safetensors") is False
    assert reg.forget(trained.path) is True
    assert trained.path.is_file()  # a trained model's file is the user's: left alone
    assert [e.name for e in reg.models()] == ["base", "a"]
    assert reg.forget(imported.path) is True
    assert not imported.path.exists()  # our copy goes
    assert [e.name for e in reg.models()] == ["base"]
    assert json.loads((user / "models.json").read_text())["imported"] == {}
    assert reg.forget(imported.path) is False


def test_missing_and_changed_user_models_are_left_out_with_a_warning(shipped, tmp_path, caplog):
    user = tmp_path / "user"
    reg = ModelRegistry(user, shipped_dir=shipped)
    a = reg.import_model(write_model(tmp_path / "a.safetensors", name="a"))
    b = reg.import_model(write_model(tmp_path / "b.safetensors", name="b"))
    t = reg.register_trained(write_model(tmp_path / "t.safetensors", name="t"))
    a.path.unlink()
    write_model(b.path, name="b", seed=5)  # same name, other bytes: the recorded SHA-256 no longer matches
    t.path.unlink()
    caplog.clear()
    assert [e.name for e in reg.models()] == ["base"]
    messages = warnings_of(caplog)
    assert len(messages) == 3
    assert any(str(a.path) in m and "missing" in m for m in messages)
    assert any(str(b.path) in m and "changed" in m for m in messages)
    assert any(str(t.path) in m and "missing" in m for m in messages)


def test_corrupt_manifest_is_one_warning_and_an_empty_user_list(shipped, tmp_path, caplog):
    user = tmp_path / "user"
    user.mkdir()
    for text in ("{not json", "[1, 2]", '{"a.safetensors": 3}', '{"../x.safetensors": "ab"}',
                 '{"format": "ceph-landmarks-models/2", "trained": {"relative.safetensors": "ab"}}'):
        (user / "models.json").write_text(text)
        caplog.clear()
        assert [e.kind for e in ModelRegistry(user, shipped_dir=shipped).models()] == ["shipped"], text
        assert len(warnings_of(caplog)) == 1 and "models.json" in warnings_of(caplog)[0], text
    (user / "models.json").write_text("{not json")
    reg = ModelRegistry(user, shipped_dir=shipped)
    reg.import_model(write_model(tmp_path / "a.safetensors", name="a"))  # starts afresh, keeps the old one
    assert (user / "models.json.corrupt").read_text() == "{not json"
    assert [e.name for e in reg.models()] == ["base", "a"]


def test_old_flat_manifest_is_read_and_upgraded(shipped, tmp_path):
    user = tmp_path / "user"
    old = write_model(user / "old-0123456789ab.safetensors", name="old")
    (user / "models.json").write_text(json.dumps({old.name: file_sha256(old)}, indent=2))
    reg = ModelRegistry(user, shipped_dir=shipped)
    assert [(e.kind, e.name, e.path) for e in reg.models()][1:] == [("imported", "old", old)]
    t = write_model(tmp_path / "t.safetensors", name="t")
    reg.register_trained(t)
    manifest = json.loads((user / "models.json").read_text())
    assert manifest["imported"] == {old.name: file_sha256(old)}
    assert manifest["trained"] == {str(t.resolve()): file_sha256(t)}
    assert [e.name for e in reg.models()] == ["base", "old", "t"]


def test_same_label_twice_names_the_files(shipped, tmp_path):
    reg = ModelRegistry(tmp_path / "user", shipped_dir=shipped)
    one = reg.import_model(write_model(tmp_path / "x1.safetensors", name="x", seed=1))
    two = reg.import_model(write_model(tmp_path / "x2.safetensors", name="x", seed=2))
    labels = [e.label for e in reg.models()]
    assert labels == ["base (shipped)", f"x (imported: {one.path.name})", f"x (imported: {two.path.name})"]


def test_registry_agrees_with_the_model_writer(tiny_model, tmp_path):
    """A file save_model wrote passes read_model_info, and the imported copy loads and verifies."""
    from CephLandmarksLib.store.modelfile import load_model

    info = read_model_info(tiny_model)
    loaded = load_model(tiny_model)
    assert info["name"] == loaded.info.name and info["landmark_names"] == loaded.info.landmark_names
    entry = ModelRegistry(tmp_path / "user", shipped_dir=tmp_path / "none").register_trained(tiny_model)
    assert "Trained: on " in entry.tooltip.splitlines()[1]
    copy = ModelRegistry(tmp_path / "user", shipped_dir=tmp_path / "none").import_model(tiny_model)
    assert load_model(copy.path).sha256 == copy.sha256 == loaded.sha256


# the CLI


def test_cli_models_lists_label_and_path(shipped, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(cli, "DEFAULT_MODEL_DIR", shipped)
    user = tmp_path / "user"
    reg = ModelRegistry(user, shipped_dir=shipped)
    imported = reg.import_model(write_model(tmp_path / "a.safetensors", name="a"))
    trained = reg.register_trained(write_model(tmp_path / "t.safetensors", name="t"))
    assert cli.main(["models", "--user-dir", str(user)]) == 0
    out, err = capsys.readouterr()
    assert out.splitlines() == [f"base (shipped)\t{shipped / 'base.safetensors'}",
                                f"a (imported)\t{imported.path}", f"t (trained)\t{trained.path}"]
    assert cli.main(["models"]) == 0  # without a user folder: the shipped models
    assert capsys.readouterr().out.splitlines() == [f"base (shipped)\t{shipped / 'base.safetensors'}"]


def test_cli_models_user_errors(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(cli, "DEFAULT_MODEL_DIR", tmp_path / "empty")
    not_a_folder = tmp_path / "file"
    not_a_folder.write_text("x")
    assert cli.main(["models", "--user-dir", str(not_a_folder)]) == 2
    out, err = capsys.readouterr()
    assert out == "" and len(err.strip().splitlines()) == 1 and "not a folder" in err
    assert cli.main(["models"]) == 0
    out, err = capsys.readouterr()
    assert out == "" and "no models" in err
