"""Clinic fine-tune (finetune.py, adaptation's "fine-tune" method) on the tiny model."""

import json

import numpy as np
import pytest
import torch

from CephLandmarksLib import cli
from CephLandmarksLib.annotations.datasets import load_dataset
from CephLandmarksLib.clinic.adaptation import encode_case
from CephLandmarksLib.clinic.finetune import fine_tune, logits_of
from CephLandmarksLib.detection.predictor import LandmarkDetector
from CephLandmarksLib.imaging.images import read_radiograph
from CephLandmarksLib.network.heatmaps import heatmap_nll
from CephLandmarksLib.store.modelfile import load_model
from CephLandmarksLib.training.scoring import Case
from conftest import make_generic_dataset


@pytest.fixture(scope="module")
def encoded_cases(tiny_model, generic_dataset):
    det = LandmarkDetector(tiny_model)
    cases = []
    for s in load_dataset(generic_dataset, "train"):
        rad = read_radiograph(s.image_path, s.spacing_mm)
        case = Case(s.id, det.observe(rad), np.asarray(s.landmarks_px, dtype=np.float64))
        encode_case(det, case, rad)
        cases.append(case)
    return det, cases


def test_encoded_case_gives_back_the_observed_logits(encoded_cases):
    """The encoder outputs are read from the very input observe used (frame, mirroring, alignment)."""
    det, cases = encoded_cases
    for c in cases:
        again = logits_of(det.model.net, c.encoded)
        assert again.shape == c.obs.logits.shape
        scale = float(c.obs.logits.abs().max())
        assert float((again - c.obs.logits).abs().max()) < 0.03 * scale  # bfloat16 features, float32 head


def test_fine_tune_trains_the_decoder_only_towards_the_targets(encoded_cases):
    det, cases = encoded_cases
    net = det.model.net
    before = {k: v.clone() for k, v in net.state_dict().items()}
    targets = np.stack([c.true_uv + [3.0, 0.0] for c in cases])  # a convention 3 model pixels to the right
    tuned = fine_tune(net, [c.encoded for c in cases], targets, epochs=15, lr=1e-3)

    def nll(model):
        logits = torch.stack([logits_of(model, c.encoded) for c in cases])
        return float(heatmap_nll(logits, torch.as_tensor(targets, dtype=torch.float32)))

    assert nll(tuned) < nll(net) - 0.2
    assert all(torch.equal(v, net.state_dict()[k]) for k, v in before.items())  # the base is untouched
    after = tuned.state_dict()
    changed = {k for k, v in before.items() if not torch.equal(v, after[k])}
    assert changed and all(k.startswith(("decoder.", "head.")) for k in changed)
    assert any(k.startswith("head.") for k in changed) and any(k.startswith("decoder.") for k in changed)


def test_adapt_by_fine_tune_writes_the_tuned_network(tiny_model, tmp_path, capsys, monkeypatch):
    from CephLandmarksLib.clinic import adaptation

    measured = []  # the cases each measurement-coverage call reads: "after" must read the fine-tune's maps
    real = adaptation.measurement_coverage
    monkeypatch.setattr(adaptation, "measurement_coverage",
                        lambda det, cases, out: measured.append(cases) or real(det, cases, out))
    clinic = tmp_path / "clinic"
    clinic.mkdir()
    make_generic_dataset(clinic, n_train=10, n_test=0, seed=5)
    out = tmp_path / "tuned.safetensors"
    code = cli.main(["adapt", "--model", str(tiny_model), "--dataset", str(clinic), "--out", str(out),
                     "--methods", "fine-tune"])
    _, err = capsys.readouterr()
    assert code == 0, err
    rec = load_model(out).info.adaptation
    assert rec["method"] == "fine-tune" and rec["fine_tune"]["trained"] == "decoder and head"
    assert rec["offsets_mm"] is None
    before, after = measured
    assert not any(torch.equal(a.obs.logits, b.obs.logits) for a, b in zip(after, before, strict=True))
    assert "Fine-tune: the decoder and head" in (tmp_path / "tuned.report" / "report.md").read_text()
    base, tuned = load_model(tiny_model).net.state_dict(), load_model(out).net.state_dict()
    changed = {k for k in base if not torch.equal(base[k], tuned[k])}
    assert changed and all(k.startswith(("decoder.", "head.")) for k in changed)
    code = cli.main(["detect", str(clinic / "img00.png"), "--model", str(out), "--out-dir", str(tmp_path / "det"),
                     "--no-overlay"])
    _, err = capsys.readouterr()
    assert code == 0, err
    assert json.loads((tmp_path / "det" / "img00.json").read_text())["model"]["adapted"]["method"] == "fine-tune"


def test_adapt_refuses_an_unknown_method_before_reading_anything(tiny_model, tmp_path, capsys):
    out = tmp_path / "x.safetensors"
    code = cli.main(["adapt", "--model", str(tiny_model), "--dataset", str(tmp_path / "nowhere"), "--out", str(out),
                     "--methods", "none,finetune"])
    _, err = capsys.readouterr()
    assert code == 2 and len(err.strip().splitlines()) == 1 and "'finetune'" in err and "fine-tune" in err
    assert not out.exists()
