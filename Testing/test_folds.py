"""K-fold ensemble training (`train --folds K`): split, members, manifest, out-of-fold data, resume."""

import shutil

import numpy as np
import pytest
import torch

from CephLandmarksLib.annotations.datasets import load_dataset, split_folds
from CephLandmarksLib.cli import main
from CephLandmarksLib.errors import CephError
from CephLandmarksLib.files import file_sha256
from CephLandmarksLib.store.modelfile import load_model
from CephLandmarksLib.training.folds import load_oof, read_manifest, train_folds
from CephLandmarksLib.training.loop import TrainConfig
from CephLandmarksLib.training.prepared import prepare, prepared_logits

ARGS = ["--input-size", "64x64", "--epochs", "1", "--batch-size", "4", "--holdout", "1", "--device", "cpu"]


def _cfg(dataset, out):
    return TrainConfig(dataset=str(dataset), out=str(out), input_size=(64, 64), epochs=1, batch_size=4,
                       holdout=1, device="cpu")


def test_split_covers_every_image_once_and_is_reproducible():
    samples = list(range(23))
    folds = split_folds(samples, 5, seed=3)
    assert sorted(i for f in folds for i in f) == samples
    assert sorted(len(f) for f in folds) == [4, 4, 5, 5, 5]
    assert split_folds(samples, 5, seed=3) == folds
    assert split_folds(samples, 5, seed=4) != folds
    assert all(f == sorted(f) for f in folds)
    for k in (1, 0, 24):
        with pytest.raises(CephError, match="folds"):
            split_folds(samples, k)


@pytest.fixture(scope="module")
def ensemble(generic_dataset, tmp_path_factory):
    out = tmp_path_factory.mktemp("folds") / "ens.json"
    assert main(["train", "--dataset", str(generic_dataset), "--out", str(out), "--folds", "3", *ARGS]) == 0
    return out


def test_members_manifest_and_out_of_fold_data(ensemble, generic_dataset):
    m = read_manifest(ensemble)
    samples = load_dataset(generic_dataset, "train")
    ids = [s.id for s in samples]
    assert m["k"] == 3 and m["seed"] == 0 and m["n_images"] == 8 and len(m["members"]) == 3
    assert sorted(i for e in m["members"] for i in e["ids"]) == sorted(ids)  # every image out of fold once
    by_id = {s.id: s for s in samples}
    oof = load_oof(ensemble)
    assert sorted(oof.ids) == sorted(ids) and len(set(oof.ids)) == 8
    assert oof.logits.shape == (8, 19, 64, 64) and oof.logits.dtype == torch.float16
    assert oof.uv.shape == (8, 19, 2) and len(oof.frames) == 8 and oof.landmarks_px.shape == (8, 19, 2)
    for e in m["members"]:
        member_file = ensemble.parent / e["file"]
        assert member_file.name == f"ens-fold{e['fold']}.safetensors" and file_sha256(member_file) == e["sha256"]
        member = load_model(member_file)
        t = member.info.training
        # The member trained on neither its out-of-fold images nor its inner holdout.
        assert t["fold"]["out_of_fold_ids"] == e["ids"] and t["holdout_ids"] == e["inner_holdout_ids"]
        assert set(e["ids"]).isdisjoint(e["inner_holdout_ids"]) and e["n_train"] == 8 - len(e["ids"]) - 1
        assert t["config"]["seed"] == e["fold"]
        # The OOF logits of the fold are this member's logits on those images, and no other member's.
        rows = [k for k, i in enumerate(oof.ids) if i in set(e["ids"])]
        assert [oof.ids[k] for k in rows] == e["ids"] and set(oof.fold[rows]) == {e["fold"]}
        assert oof.member_sha256[e["fold"]] == e["sha256"]
        data = prepare([by_id[i] for i in e["ids"]], (64, 64))
        mine = prepared_logits(member.net, data, "cpu")
        assert torch.allclose(oof.logits[rows].float(), mine, atol=0.05, rtol=1e-2)
        assert np.allclose(oof.uv[rows].numpy(), data.uv.numpy())
    others = load_model(ensemble.parent / m["members"][0]["file"])
    rows = [k for k, f in enumerate(oof.fold) if f == 2]
    theirs = prepared_logits(others.net, prepare([by_id[oof.ids[k]] for k in rows], (64, 64)), "cpu")
    assert not torch.allclose(oof.logits[rows].float(), theirs, atol=0.05, rtol=1e-2)


def test_resume_retrains_only_the_unfinished_fold(ensemble, generic_dataset, tmp_path):
    # A copy, so the other test's ensemble stays as it was.
    out = tmp_path / "ens.json"
    shutil.copy(ensemble, out)
    shutil.copytree(ensemble.with_suffix(".folds"), tmp_path / "ens.folds")
    m = read_manifest(out)
    members = {e["fold"]: out.parent / e["file"] for e in m["members"]}
    before = {i: p.stat().st_mtime_ns for i, p in members.items()}
    # The last fold's outputs gone, and its checkpoints too: interrupted in its first step, then resumed.
    members[3].unlink()
    (out.parent / m["members"][2]["oof"]).unlink()
    shutil.rmtree(tmp_path / "ens.folds" / "work" / "fold3")
    lines = []
    with pytest.raises(CephError, match="cancelled"):
        train_folds(_cfg(generic_dataset, out), 3, resume=True, log=lines.append, progress=False,
                    should_stop=lambda: True)
    assert read_manifest(out)["members"][2]["status"] == "pending"
    with pytest.raises(CephError, match="unfinished"):
        load_oof(out)
    lines.clear()
    train_folds(_cfg(generic_dataset, out), 3, resume=True, log=lines.append, progress=False)
    assert any(line.startswith("fold 1/3: finished already") for line in lines)
    assert any(line.startswith("fold 2/3: finished already") for line in lines)
    assert sum(line.startswith('{"epoch": 1') for line in lines) == 1  # one fold trained
    assert {i: members[i].stat().st_mtime_ns for i in (1, 2)} == {i: before[i] for i in (1, 2)}
    assert members[3].is_file() and sorted(load_oof(out).ids) == sorted(s.id for s in load_dataset(generic_dataset))
    # Only the member and OOF file are missing: the fold resumes from its finished checkpoint, no epoch runs.
    members[3].unlink()
    lines.clear()
    train_folds(_cfg(generic_dataset, out), 3, resume=True, log=lines.append, progress=False)
    assert any("fold 3/3" in line and "resuming from its last checkpoint" in line for line in lines)
    assert not any(line.startswith('{"epoch"') for line in lines) and members[3].is_file()
    # Other settings do not resume; a finished ensemble is not overwritten without --resume.
    with pytest.raises(CephError, match="other settings"):
        train_folds(TrainConfig(**{**_cfg(generic_dataset, out).__dict__, "lr": 0.5}), 3, resume=True, log=lines.append)
    with pytest.raises(CephError, match="other folds"):
        train_folds(_cfg(generic_dataset, out), 4, resume=True, log=lines.append)
    with pytest.raises(CephError, match="--resume"):
        train_folds(_cfg(generic_dataset, out), 3, log=lines.append)


@pytest.mark.parametrize("extra", [["--folds", "1"], ["--folds", "9"], ["--folds", "3", "--holdout", "5"],
                                   ["--folds", "3", "--resume"]])
def test_bad_fold_options_are_one_line_and_exit_2(generic_dataset, tmp_path, capsys, extra):
    out = tmp_path / "ens.json"
    args = ["train", "--dataset", str(generic_dataset), "--out", str(out), *ARGS]
    assert main(args + extra) == 2  # a second --holdout overrides the first
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("ceph-landmarks: error:"), err
    assert list(tmp_path.iterdir()) == []  # nothing written


def test_folds_need_a_json_manifest(generic_dataset, tmp_path, capsys):
    assert main(["train", "--dataset", str(generic_dataset), "--out", str(tmp_path / "ens.safetensors"),
                 "--folds", "3", *ARGS]) == 2
    assert "NAME.json" in capsys.readouterr().err and list(tmp_path.iterdir()) == []
