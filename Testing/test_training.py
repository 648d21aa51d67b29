import pytest
import torch

from CephLandmarksLib.errors import CephError
from CephLandmarksLib.network.heatmaps import heatmap_nll
from CephLandmarksLib.network.model import build_model
from CephLandmarksLib.store.modelfile import load_model
from CephLandmarksLib.training.loop import TrainConfig, forward, train


def test_model_shapes():
    net = build_model().eval()
    assert net(torch.zeros(1, 1, 96, 64)).shape == (1, 19, 96, 64)
    assert net.stem[0].in_channels == 1


@pytest.mark.slow  # trains a network: about a minute on 2 cores
def test_loss_falls_on_a_fixed_batch(generic_dataset):
    from CephLandmarksLib.annotations.datasets import load_dataset
    from CephLandmarksLib.training.prepared import prepare

    torch.manual_seed(0)
    data = prepare(load_dataset(generic_dataset, "train")[:4], (64, 64))
    net = build_model()
    opt = torch.optim.Adam(net.parameters(), 1e-3)
    losses = []
    for _ in range(12):
        loss = heatmap_nll(forward(net, data.inputs.float(), torch.device("cpu"), True), data.uv)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0] - 1.0, losses


def test_trained_model_file_records_training_and_calibration(tiny_model):
    m = load_model(tiny_model)
    assert m.info.input_size == (64, 64)
    assert len(m.info.training["holdout_ids"]) == 2 and len(m.info.training["history"]) == 2
    assert m.info.calibration["n_points"] == 2 * 19
    assert all(t > 0 for t in m.info.temperatures) and m.info.ere_threshold_mm > 0


@pytest.mark.slow  # trains a network: about a minute on 2 cores
def test_resume_repeats_the_uninterrupted_run(generic_dataset, tmp_path):
    def cfg(name):
        return TrainConfig(dataset=str(generic_dataset), out=str(tmp_path / f"{name}.safetensors"),
                           input_size=(64, 64), epochs=2, batch_size=4, holdout=2, device="cpu")

    train(cfg("a"), log=lambda m: None, progress=False)
    steps = {"n": 0}

    def stop_in_second_epoch():
        steps["n"] += 1
        return steps["n"] == 3  # 6 training images, batch 4: epoch 1 has 2 steps

    with pytest.raises(CephError, match="cancelled"):
        train(cfg("b"), log=lambda m: None, progress=False, should_stop=stop_in_second_epoch)
    assert not (tmp_path / "b.safetensors").exists()  # no model file from a cancelled run
    train(cfg("b"), resume=True, log=lambda m: None, progress=False)
    a = torch.load(tmp_path / "a.safetensors.work" / "last.pt", weights_only=True)
    b = torch.load(tmp_path / "b.safetensors.work" / "last.pt", weights_only=True)
    for k in a["model"]:
        assert torch.allclose(a["model"][k].float(), b["model"][k].float(), atol=1e-5), k
    with pytest.raises(CephError, match="other settings"):
        train(TrainConfig(**{**cfg("b").__dict__, "lr": 0.5}), resume=True, log=lambda m: None, progress=False)


def test_fine_tuning_starts_from_the_model_and_keeps_its_holdout(tiny_model, generic_dataset, tmp_path):
    base = load_model(tiny_model)
    out = tmp_path / "tuned.safetensors"
    # A different seed would hold out other images; fine-tuning must keep the base model's.
    cfg = TrainConfig(dataset=str(generic_dataset), out=str(out), input_size=(64, 64), epochs=1, batch_size=4,
                      holdout=3, seed=7, device="cpu", init_from=str(tiny_model), lr=1e-9)
    train(cfg, log=lambda m: None, progress=False)
    tuned = load_model(out)
    assert tuned.info.training["holdout_ids"] == base.info.training["holdout_ids"]
    assert tuned.info.training["init_model"]["file_sha256"] == base.sha256
    # With a vanishing learning rate the weights are still the base model's, not a fresh network's.
    for k, v in base.net.state_dict().items():
        if v.is_floating_point() and "running" not in k:
            assert torch.allclose(v, tuned.net.state_dict()[k], atol=1e-4), k


def test_prepared_cache_round_trips_without_pickle(generic_dataset, tmp_path):
    from CephLandmarksLib.annotations.datasets import load_dataset
    from CephLandmarksLib.training.loop import _load_cache
    from CephLandmarksLib.training.prepared import from_plain, prepare, to_plain

    samples = load_dataset(generic_dataset, "train")
    d = prepare(samples[:3], (64, 64))
    path = tmp_path / "cache.pt"
    torch.save({"train": to_plain(d), "hold": to_plain(prepare(samples[3:4], (64, 64)))}, path)
    back = from_plain(torch.load(path, weights_only=True)["train"])
    assert back.ids == d.ids and back.frames == d.frames and torch.equal(back.inputs, d.inputs)
    assert _load_cache(path, samples[:3], samples[3:4]) is not None
    assert _load_cache(path, samples[:2], samples[2:4]) is None  # another split: prepare again
