"""Hostile model files, datasets, option values, resume checkpoints and output folders (issue 14).

Every case is generated here (hostile_models_corpus.py; nothing from the shared data) and run
through cli.main in this process.  Each must either exit 0 with complete outputs, or exit 2 with
exactly one line on stderr naming the file or option; never print a traceback, leave a *.part
file or change an input file.  Real processes check SIGTERM during training (marked slow).
"""

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
import warnings
from dataclasses import asdict
from pathlib import Path

import hostile_models_corpus as corpus
import numpy as np
import pytest
import torch

from CephLandmarksLib import cli
from CephLandmarksLib.annotations import datasets
from CephLandmarksLib.errors import CephError
from CephLandmarksLib.store import modelmeta, registry
from CephLandmarksLib.store.modelfile import ModelInfo, load_model
from conftest import synthetic_image

REPO = Path(__file__).resolve().parent.parent
TRAIN_FAST = ["--epochs", "1", "--input-size", "64x64", "--holdout", "2", "--device", "cpu", "--batch-size", "4"]


# What every case must satisfy


def tree_hashes(*roots) -> dict:
    """{path: sha256} of every file under the roots (or the files themselves)."""
    out = {}
    for root in roots:
        root = Path(root)
        files = [root] if root.is_file() else sorted(p for p in root.rglob("*") if p.is_file()) if root.is_dir() else []
        for p in files:
            out[str(p)] = hashlib.sha256(p.read_bytes()).hexdigest()
    return out


def part_files(*roots) -> list:
    return [p for root in roots if Path(root).is_dir() for p in Path(root).rglob("*.part")]


def run_cli(capfd, argv, inputs=(), scratch=()):
    """cli.main(argv) -> (code, stdout, stderr), checking that no warning was issued, no input changed
    and no *.part is left."""
    before = tree_hashes(*inputs)
    with warnings.catch_warnings(record=True) as caught:  # in a real run each would be a line on stderr
        warnings.simplefilter("always")
        # Not shown by a real run's default filters (and a ResourceWarning may come from another
        # test's object being garbage-collected during this call).
        for hidden in (ResourceWarning, DeprecationWarning, PendingDeprecationWarning):
            warnings.simplefilter("ignore", hidden)
        code = cli.main([str(a) for a in argv])
    out, err = capfd.readouterr()
    assert not caught, [f"{w.category.__name__}: {w.message}" for w in caught]
    assert "Traceback" not in err and "Traceback" not in out, err
    assert tree_hashes(*inputs) == before, "an input file changed"
    assert not part_files(*inputs, *scratch), "a temporary .part file was left"
    return code, out, err


def assert_refused(code, err, *needles):
    """Exit 2 and exactly one line, the tool's own, naming the file or option."""
    assert code == 2, err
    assert err.count("\n") == 1 and err.endswith("\n"), err
    assert err.startswith(cli.ERROR_PREFIX), err
    for needle in needles:
        assert str(needle) in err, (needle, err)


# Shared inputs


@pytest.fixture(scope="module")
def dataset(generic_dataset, tmp_path_factory):
    """A private copy of the generic dataset (8 train, 2 test PNGs of 96 x 120 px)."""
    return corpus.copy_dataset(generic_dataset, tmp_path_factory.mktemp("hostile") / "ds")


@pytest.fixture(scope="module")
def untrained_model(tmp_path_factory):
    """A real (untrained, float16) network at 64 x 64 whose holdout is img00 and img01: loads and
    calibrates without any training."""
    from CephLandmarksLib.network.model import build_model
    from CephLandmarksLib.store.modelfile import save_model

    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("untrained") / "untrained.safetensors"
    save_model(path, build_model(), ModelInfo(name="untrained", input_size=(64, 64),
                                              training={"holdout_ids": ["img00", "img01"]}), half=True)
    return path


@pytest.fixture(scope="module")
def marker(tmp_path_factory):
    """A file that exists only if some pickle ran code."""
    return tmp_path_factory.mktemp("marker") / "pwned"


# 1. Model metadata: every field, in type, count and range


def _field_case_id(case):
    return f"{case[0]}-{case[1]}"


@pytest.mark.parametrize("case", corpus.FIELD_MUTATIONS, ids=_field_case_id)
def test_every_bad_metadata_field_is_refused_naming_it(case, tmp_path, dataset, capfd):
    field, _, value = case
    path = corpus.write_meta_model(tmp_path / "m.safetensors", corpus.mutated(field, value))
    with pytest.raises(CephError) as e:  # the torch-free reader applies the same checks
        registry.read_model_info(path)
    assert f"'{field}'" in str(e.value) and "\n" not in str(e.value), str(e.value)
    code, _, err = run_cli(capfd, ["calibrate", "--model", path, "--dataset", dataset], [path, dataset], [tmp_path])
    assert_refused(code, err, path, f"'{field}'")


@pytest.mark.parametrize("case", corpus.FIELD_MUTATIONS[::4], ids=_field_case_id)
def test_bad_fields_of_older_files_are_refused_too(case, tmp_path):
    """Format-/1 files (no metadata checksum) are still checked field by field."""
    field, _, value = case
    meta = corpus.mutated(field, value)
    if field != "format":
        meta["format"] = modelmeta.LEGACY_FORMATS[0]
    path = corpus.write_meta_model(tmp_path / "old.safetensors", meta, seal=False)
    with pytest.raises(CephError, match=f"'{field}'"):
        load_model(path)


@pytest.mark.parametrize("label", sorted(corpus.TOP_LEVEL))
def test_metadata_that_is_not_an_object_is_refused(label, tmp_path, dataset, capfd):
    path = corpus.write_meta_model(tmp_path / "m.safetensors", corpus.TOP_LEVEL[label])
    code, _, err = run_cli(capfd, ["calibrate", "--model", path, "--dataset", dataset], [path, dataset], [tmp_path])
    assert_refused(code, err, path, "metadata", "JSON object")


@pytest.mark.parametrize("label", sorted(corpus.damaged_variants()))
def test_metadata_changed_after_checksum_is_damaged(label, tmp_path, dataset, capfd):
    meta = corpus.damaged_variants()[label]
    path = corpus.write_meta_model(tmp_path / "m.safetensors", meta, seal=False)
    with pytest.raises(CephError, match="damaged"):
        registry.read_model_info(path)
    code, _, err = run_cli(capfd, ["calibrate", "--model", path, "--dataset", dataset], [path, dataset], [tmp_path])
    assert_refused(code, err, path, "damaged")


def test_valid_small_metadata_passes_every_check(tmp_path):
    """The control: the unmutated corpus file passes both readers' metadata checks (it then fails
    only because its one small tensor is not the network)."""
    path = corpus.write_meta_model(tmp_path / "m.safetensors", corpus.valid_meta())
    assert registry.read_model_info(path)["temperatures"] == [1.0] * corpus.L
    with pytest.raises(CephError, match="do not fit the network"):
        load_model(path)


def test_every_model_info_field_has_one_check():
    """Adding a ModelInfo field without a row in modelmeta.FIELDS (or the reverse) fails here."""
    stored = set(ModelInfo.__dataclass_fields__) | {"format", "weights_sha256"}
    assert set(modelmeta.FIELDS) == stored


def test_saving_invalid_metadata_writes_nothing(untrained_model, tmp_path):
    loaded = load_model(untrained_model)
    for change in ({"temperatures": [float("nan")] * corpus.L}, {"ere_threshold_mm": 1e9},
                   {"landmark_abbreviations": ["S"] * 18}):
        info = ModelInfo(**{**loaded.info.__dict__, **change})
        with pytest.raises(CephError, match=f"'{next(iter(change))}'"):
            from CephLandmarksLib.store.modelfile import save_model

            save_model(tmp_path / "bad.safetensors", loaded.net, info)
        assert list(tmp_path.iterdir()) == []


def test_written_metadata_is_strict_json_with_both_checksums(untrained_model):
    from safetensors import safe_open

    with safe_open(str(untrained_model), "pt") as f:
        text = f.metadata()[modelmeta.META_KEY]
    meta = json.loads(text, parse_constant=lambda c: pytest.fail(f"{c} in the metadata"))
    assert meta["format"] == modelmeta.FORMAT and meta[modelmeta.CHECKSUM_KEY] == modelmeta.metadata_digest(meta)


def test_legacy_format_file_loads_and_reseal_keeps_tensors(untrained_model, tmp_path):
    """A file written before the metadata checksum (format /1) loads; reseal() upgrades it with
    the tensors byte for byte."""
    from safetensors import safe_open
    from safetensors.torch import load_file, save_file

    from CephLandmarksLib.store.modelfile import reseal

    with safe_open(str(untrained_model), "pt") as f:
        meta = json.loads(f.metadata()[modelmeta.META_KEY])
    del meta[modelmeta.CHECKSUM_KEY]
    meta["format"] = modelmeta.LEGACY_FORMATS[0]
    old = tmp_path / "old.safetensors"
    save_file(load_file(str(untrained_model)), str(old), metadata={modelmeta.META_KEY: json.dumps(meta)})
    assert load_model(old).info.input_size == (64, 64)
    reseal(old)
    assert registry.read_model_info(old)["format"] == modelmeta.FORMAT
    a, b = load_file(str(untrained_model)), load_file(str(old))
    assert all(torch.equal(a[k], b[k]) and a[k].dtype == b[k].dtype for k in a)


# 1b. Corrupt and malicious model files


def _corrupt_labels():
    return ["truncated-at-0", "truncated-at-4", "truncated-at-8", "truncated-at-20", "truncated-mid-header",
            "truncated-header-end", "truncated-last-byte", "flipped-byte-0", "flipped-byte-3", "flipped-byte-8",
            "flipped-byte-9", "flipped-third", "flipped-half", "flipped-header-end", "flipped-data",
            "trailing-bytes", "huge-header-length", "header-not-json", "random-bytes", "malicious-torch-pickle",
            "plain-pickle", "zip-file", "png-named-safetensors", "foreign-safetensors", "folder", "device", "missing"]


@pytest.fixture(scope="module")
def corrupt_files(tmp_path_factory, marker):
    return corpus.corrupt_model_files(tmp_path_factory.mktemp("corrupt"), marker)


@pytest.mark.parametrize("label", _corrupt_labels())
def test_corrupt_model_files_are_one_line(label, corrupt_files, marker, dataset, tmp_path, capfd):
    path = corrupt_files[label]
    if label != "flipped-data":  # the registry reads the header only; load_model checks the weights
        with pytest.raises(CephError) as e:
            registry.read_model_info(path)
        assert str(path) in str(e.value) and "\n" not in str(e.value)
    # Through train --init-from: refused before anything is written.
    out = tmp_path / "out" / "m.safetensors"
    code, _, err = run_cli(capfd, ["train", "--dataset", dataset, "--out", out, "--init-from", path, *TRAIN_FAST],
                           [path, dataset], [tmp_path])
    assert_refused(code, err, path)
    assert not (tmp_path / "out").exists() and not marker.exists()


# 2. Datasets


@pytest.mark.parametrize("label", sorted(corpus.generic_mutations()))
def test_broken_generic_dataset_is_refused_naming_the_table(label, dataset, tmp_path, capfd):
    ds = corpus.copy_dataset(dataset, tmp_path / "ds")
    header, rows = corpus.read_table(dataset)
    (ds / "landmarks.csv").write_bytes(corpus.generic_mutations()[label](header, rows, ds))
    out = tmp_path / "out" / "m.safetensors"
    code, _, err = run_cli(capfd, ["train", "--dataset", ds, "--out", out, *TRAIN_FAST], [ds], [tmp_path])
    assert_refused(code, err, "landmarks.csv")
    assert not (tmp_path / "out").exists()  # no model, no empty m.safetensors.work/


@pytest.mark.parametrize("label", ["x-outside", "split-Train", "row-short", "latin-1"])
def test_calibrate_leaves_the_model_alone_when_the_data_are_bad(label, untrained_model, dataset, tmp_path, capfd):
    model = tmp_path / "m.safetensors"
    model.write_bytes(untrained_model.read_bytes())
    ds = corpus.copy_dataset(dataset, tmp_path / "ds")
    header, rows = corpus.read_table(dataset)
    (ds / "landmarks.csv").write_bytes(corpus.generic_mutations()[label](header, rows, ds))
    code, _, err = run_cli(capfd, ["calibrate", "--model", model, "--dataset", ds], [model, ds], [tmp_path])
    assert_refused(code, err, "landmarks.csv")


@pytest.mark.parametrize("label", ["test-row-outside", "y-inf", "split-tst"])
def test_evaluate_reports_no_metrics_from_bad_annotations(label, untrained_model, dataset, tmp_path, capfd):
    ds = corpus.copy_dataset(dataset, tmp_path / "ds")
    header, rows = corpus.read_table(dataset)
    (ds / "landmarks.csv").write_bytes(corpus.generic_mutations()[label](header, rows, ds))
    out = tmp_path / "ev"
    code, _, err = run_cli(capfd, ["evaluate", "--model", untrained_model, "--dataset", ds, "--split", "test1",
                                   "--out", out], [untrained_model, ds], [tmp_path])
    assert_refused(code, err, "landmarks.csv")
    assert not (out / "metrics.json").exists()


@pytest.mark.parametrize("label", sorted(corpus.valid_generic_variants()))
def test_odd_but_valid_tables_read_like_the_plain_one(label, dataset, tmp_path):
    ds = corpus.copy_dataset(dataset, tmp_path / "ds")
    header, rows = corpus.read_table(dataset)
    (ds / "landmarks.csv").write_bytes(corpus.valid_generic_variants()[label](header, rows))
    for split in ("train", "test1"):
        plain, odd = datasets.load_dataset(dataset, split), datasets.load_dataset(ds, split)
        assert [s.id for s in odd] == [s.id for s in plain] and len(odd) == (8 if split == "train" else 2)
        assert all(np.array_equal(a.landmarks_px, b.landmarks_px) for a, b in zip(odd, plain, strict=True))


def test_bom_dataset_evaluates_completely(untrained_model, dataset, tmp_path, capfd):
    ds = corpus.copy_dataset(dataset, tmp_path / "ds")
    header, rows = corpus.read_table(dataset)
    (ds / "landmarks.csv").write_bytes(corpus.valid_generic_variants()["utf-8-bom"](header, rows))
    out = tmp_path / "ev"
    code, stdout, err = run_cli(capfd, ["evaluate", "--model", untrained_model, "--dataset", ds, "--split", "test1",
                                        "--out", out], [untrained_model, ds], [tmp_path])
    assert code == 0, err
    metrics = json.loads((out / "metrics.json").read_text(), parse_constant=lambda c: pytest.fail(c))
    assert metrics["n_images"] == 2 and np.isfinite(metrics["mre_mm"]) and "test1: MRE" in stdout


@pytest.fixture(scope="module")
def isbi_source(tmp_path_factory):
    rng = np.random.default_rng(3)
    return corpus.make_isbi(tmp_path_factory.mktemp("isbi") / "isbi", [synthetic_image(rng) for _ in range(4)])


def test_small_isbi_dataset_is_read_with_or_without_a_byte_order_mark(isbi_source, tmp_path):
    samples = datasets.load_dataset(isbi_source, "train")
    assert len(samples) == 4 and samples[0].spacing_mm == (datasets.ISBI_SPACING_MM,) * 2
    root = corpus.copy_dataset(isbi_source, tmp_path / "isbi")
    for doctor in ("senior", "junior"):
        path = corpus.isbi_annotation(root, doctor, 1)
        path.write_bytes(b"\xef\xbb\xbf" + path.read_bytes())
    assert all(np.array_equal(a.landmarks_px, b.landmarks_px)
               for a, b in zip(datasets.load_dataset(root, "train"), samples, strict=True))


@pytest.mark.parametrize("label", sorted(corpus.isbi_mutations()))
def test_broken_isbi_dataset_is_refused_naming_the_file(label, isbi_source, tmp_path, capfd):
    root = corpus.copy_dataset(isbi_source, tmp_path / "isbi")
    named = corpus.isbi_mutations()[label](root)
    out = tmp_path / "out" / "m.safetensors"
    code, _, err = run_cli(capfd, ["train", "--dataset", root, "--out", out, *TRAIN_FAST], [root], [tmp_path])
    assert_refused(code, err, named.name)
    assert not (tmp_path / "out").exists()


# 3. Option values, every sub-command


OPTION_CASES = [  # (sub-command arguments after the fixed ones, the option the line must name)
    ("train", ["--batch-size", "0"], "--batch-size"), ("train", ["--batch-size", "-1"], "--batch-size"),
    ("train", ["--batch-size", "x"], "--batch-size"), ("train", ["--batch-size", "1e3"], "--batch-size"),
    ("train", ["--batch-size", "5000"], "--batch-size"),
    ("train", ["--lr", "nan"], "--lr"), ("train", ["--lr", "inf"], "--lr"), ("train", ["--lr", "0"], "--lr"),
    ("train", ["--lr", "-0.1"], "--lr"), ("train", ["--lr", "fast"], "--lr"), ("train", ["--lr", "5"], "--lr"),
    ("train", ["--epochs", "0"], "--epochs"), ("train", ["--epochs", "-3"], "--epochs"),
    ("train", ["--epochs", "2.5"], "--epochs"), ("train", ["--epochs", "1e9"], "--epochs"),
    ("train", ["--folds", "1"], "--folds"), ("train", ["--folds", "0"], "--folds"),
    ("train", ["--folds", "1000"], "--folds"), ("train", ["--folds", "x"], "--folds"),
    ("train", ["--holdout", "-1"], "--holdout"), ("train", ["--holdout", "0"], "--holdout"),
    ("train", ["--holdout", "nan"], "--holdout"),
    ("train", ["--seed", "-1"], "--seed"), ("train", ["--seed", "x"], "--seed"),
    ("train", ["--device", "tpu9"], "--device"), ("train", ["--device", "cuda:7"], "--device"),
    ("train", ["--device", "cuda:x"], "--device"), ("train", ["--device", "cpu:0"], "--device"),
    ("train", ["--device", ""], "--device"),
    ("train", ["--input-size", "0x0"], "--input-size"), ("train", ["--input-size", "63x64"], "--input-size"),
    ("train", ["--input-size", "96x100"], "--input-size"), ("train", ["--input-size", "64"], "--input-size"),
    ("train", ["--input-size", "axb"], "--input-size"), ("train", ["--input-size", "8192x8192"], "--input-size"),
    ("train", ["--input-size", "-64x64"], "--input-size"),
    ("train", ["--ground-truth", "intern"], "--ground-truth"), ("train", ["--augment", "heavy"], "--augment"),
    ("train", ["--no-such-option"], "--no-such-option"),
    ("detect", ["--device", "cuda:7"], "--device"), ("detect", ["--device", "auto"], "--device"),
    ("detect", ["--device", "tpu9"], "--device"), ("detect", ["--spacing", "nan"], "--spacing"),
    ("detect", ["--spacing", "0"], "--spacing"), ("detect", ["--spacing", "-0.1"], "--spacing"),
    ("detect", ["--spacing", "inf"], "--spacing"), ("detect", ["--spacing", "0.1,0.1,0.1"], "--spacing"),
    ("detect", ["--spacing", "thin"], "--spacing"),
    ("evaluate", ["--split", "test3"], "--split"), ("evaluate", ["--device", "cuda:7"], "--device"),
    ("evaluate", ["--ground-truth", "x"], "--ground-truth"),
    ("calibrate", ["--ground-truth", "x"], "--ground-truth"),
    ("report", ["--device", "tpu9"], "--device"), ("report", ["--spacing", "0"], "--spacing"),
]


def _fixed_arguments(command, tmp_path, dataset, model):
    return {
        "train": ["train", "--dataset", dataset, "--out", tmp_path / "o" / "m.safetensors"],
        "detect": ["detect", dataset / "img08.png", "--model", model, "--out-dir", tmp_path / "o"],
        "evaluate": ["evaluate", "--model", model, "--dataset", dataset, "--out", tmp_path / "o"],
        "calibrate": ["calibrate", "--model", model, "--dataset", dataset],
        "report": ["report", dataset / "img08.png", "--model", model, "--out-dir", tmp_path / "o"],
    }[command]


@pytest.mark.parametrize("command, extra, option", OPTION_CASES,
                         ids=[f"{c}{'_'.join(e)}" for c, e, _ in OPTION_CASES])
def test_bad_option_values_are_one_line_naming_the_option(command, extra, option, dataset, tmp_path, capfd):
    model = tmp_path / "model.safetensors"
    model.write_bytes(b"never read")
    argv = _fixed_arguments(command, tmp_path, dataset, model) + extra
    code, _, err = run_cli(capfd, argv, [dataset, model], [tmp_path])
    assert_refused(code, err, option)
    assert "usage:" not in err and not (tmp_path / "o").exists()


@pytest.mark.parametrize("argv, needle", [
    ([], "command"), (["bogus"], "bogus"), (["train", "--out", "x.safetensors"], "--dataset"),
    (["evaluate", "--dataset", "d"], "--out"), (["calibrate", "--dataset", "d"], "--model"), (["detect"], "images"),
])
def test_missing_arguments_are_one_line(argv, needle, capfd):
    code, _, err = run_cli(capfd, argv)
    assert_refused(code, err, needle)


def test_help_still_prints_usage(capfd):
    assert cli.main(["train", "--help"]) == 0
    assert "--batch-size" in capfd.readouterr().out


# 4. Training pre-flight: output folders, work folders, resume


def test_output_refusals(dataset, tmp_path, capfd):
    """--out / --work-dir that cannot be written are refused before any epoch (each: one line, the option)."""
    folder = tmp_path / "a-folder"
    folder.mkdir()
    a_file = tmp_path / "a-file.txt"
    a_file.write_text("keep me")
    image = tmp_path / "photo.png"
    image.write_bytes((dataset / "img00.png").read_bytes())
    cases = [
        (["--out", folder], "--out"),
        (["--out", "/proc/m.safetensors"], "--out"),
        (["--out", a_file / "m.safetensors"], "--out"),
        (["--out", dataset / "landmarks.csv"], "--out"),
        (["--out", image], "--out"),
        (["--out", a_file], "--out"),
        (["--out", tmp_path / "w1" / "m.safetensors", "--work-dir", a_file], "--work-dir"),
        (["--out", tmp_path / "w2" / "m.safetensors", "--work-dir", "/proc/work"], "--work-dir"),
        (["--out", tmp_path / "w3" / "m.safetensors", "--work-dir", a_file / "work"], "--work-dir"),
        (["--out", folder.with_suffix(".json"), "--folds", "2"], "--out"),
        (["--out", "/proc/ens.json", "--folds", "2"], "--out"),
        (["--out", tmp_path / "ens.safetensors", "--folds", "2"], "--out"),
        (["--out", tmp_path / "w4" / "m.safetensors", "--init-from", tmp_path / "none.safetensors"],
         "none.safetensors"),
    ]
    folder.with_suffix(".json").mkdir()
    for extra, needle in cases:
        before = sorted(p.name for p in tmp_path.iterdir())
        code, _, err = run_cli(capfd, ["train", "--dataset", dataset, *TRAIN_FAST, *extra], [dataset, a_file, image],
                               [tmp_path])
        assert_refused(code, err, needle)
        assert sorted(p.name for p in tmp_path.iterdir()) == before, extra  # nothing created, no .work/
        assert list(folder.iterdir()) == []


def test_model_path_that_is_not_a_file_is_named(dataset, tmp_path, capfd):
    for path, words in ((tmp_path, "is a folder"), (Path("/dev/null"), "not a regular file")):
        code, _, err = run_cli(capfd, ["calibrate", "--model", path, "--dataset", dataset], [dataset])
        assert_refused(code, err, path, words)


def _resume_config(dataset, out) -> dict:
    from CephLandmarksLib.training.augment import AugmentSettings
    from CephLandmarksLib.training.loop import TrainConfig

    return asdict(TrainConfig(dataset=str(dataset), out=str(out), input_size=(64, 64), epochs=1, batch_size=4,
                              holdout=2, device="cpu", augment=asdict(AugmentSettings())))


@pytest.fixture(scope="module")
def checkpoint_corpus(dataset, marker, tmp_path_factory):
    folder = tmp_path_factory.mktemp("resume")
    return folder, corpus.foreign_checkpoints(folder, marker, _resume_config(dataset, folder / "m.safetensors"))


@pytest.mark.parametrize("label", ["random-bytes", "empty", "text", "malicious-pickle", "plain-pickle", "a-tensor",
                                   "missing-keys", "epoch-is-text", "config-is-list", "zip-not-torch", "truncated",
                                   "other-settings", "weights-do-not-fit", "a-folder"])
def test_resume_from_a_foreign_checkpoint_is_one_line(label, checkpoint_corpus, dataset, marker, tmp_path, capfd):
    _, cases = checkpoint_corpus
    data, needle = cases[label]
    out = tmp_path / "m.safetensors"
    work = tmp_path / "m.safetensors.work"
    work.mkdir()
    if data is None:
        (work / "last.pt").mkdir()
    else:
        (work / "last.pt").write_bytes(data)
    code, _, err = run_cli(capfd, ["train", "--dataset", dataset, "--out", out, "--resume", *TRAIN_FAST],
                           [dataset, work], [tmp_path])
    assert_refused(code, err, needle)
    assert not out.exists() and not marker.exists()
    assert sorted(p.name for p in work.iterdir()) == ["last.pt"]  # the checkpoint kept, nothing added


def test_resume_with_nothing_to_resume_creates_nothing(dataset, tmp_path, capfd):
    code, _, err = run_cli(capfd, ["train", "--dataset", dataset, "--out", tmp_path / "m.safetensors", "--resume",
                                   *TRAIN_FAST], [dataset], [tmp_path])
    assert_refused(code, err, "nothing to resume")
    assert list(tmp_path.iterdir()) == []


def test_failed_training_removes_the_work_folder_it_created(dataset, tmp_path, capfd, monkeypatch):
    """A bad image found while preparing: one line, and no empty OUT.work/ is left behind."""
    ds = corpus.copy_dataset(dataset, tmp_path / "ds")
    from CephLandmarksLib.training import loop as training

    def broken(samples, size, desc=""):
        raise CephError(f"{samples[0].image_path}: not a readable image")

    monkeypatch.setattr(training, "prepare", broken)
    code, _, err = run_cli(capfd, ["train", "--dataset", ds, "--out", tmp_path / "o" / "m.safetensors", *TRAIN_FAST],
                           [ds], [tmp_path])
    assert_refused(code, err, "not a readable image")
    assert not (tmp_path / "o" / "m.safetensors.work").exists()


# 5. Signals


@pytest.mark.parametrize("signum, code", [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_signal_during_a_write_leaves_no_part_file(signum, code, dataset, tmp_path, capfd, monkeypatch):
    """The signal arrives while a file is being written (the prepared-data cache, the first write of
    a run): the run exits 128 + signal with one line, the .part file is gone, and the handlers
    main() installed are removed again."""
    real_save = torch.save

    def save_then_signal(obj, f, *args, **kwargs):
        Path(f).write_bytes(b"half of a checkpoint" * 1000)
        os.kill(os.getpid(), signum)
        time.sleep(5)  # the handler raises before this ends
        real_save(obj, f, *args, **kwargs)

    monkeypatch.setattr(torch, "save", save_then_signal)
    before = signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)
    out = tmp_path / "o" / "m.safetensors"
    got, _, err = run_cli(capfd, ["train", "--dataset", dataset, "--out", out, *TRAIN_FAST], [dataset], [tmp_path])
    assert got == code and err.splitlines()[-1] == f"ceph-landmarks: interrupted ({signal.Signals(signum).name})"
    assert not out.exists() and not (tmp_path / "o" / "m.safetensors.work").exists()
    assert (signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)) == before


@pytest.mark.slow
def test_sigterm_during_real_training_exits_143_without_part_files(dataset, tmp_path):
    """A real `ceph-landmarks train` process, SIGTERM once its first checkpoint exists (so the signal
    lands in the middle of later epochs): exit 143, one closing line, no traceback, no *.part."""
    out = tmp_path / "m.safetensors"
    work = tmp_path / "m.safetensors.work"
    args = [sys.executable, "-m", "CephLandmarksLib", "train", "--dataset", str(dataset), "--out", str(out),
            "--epochs", "500", "--input-size", "64x64", "--holdout", "2", "--device", "cpu"]
    proc = subprocess.Popen(args, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.time() + 240
        while not (work / "last.pt").is_file() and proc.poll() is None and time.time() < deadline:
            time.sleep(0.2)
        assert proc.poll() is None, proc.communicate()[1]
        time.sleep(1.0)
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 143, err
    assert "Traceback" not in err and err.strip().splitlines()[-1] == "ceph-landmarks: interrupted (SIGTERM)"
    assert not part_files(tmp_path) and not out.exists()
    assert (work / "last.pt").is_file()  # the finished epochs are kept for --resume
