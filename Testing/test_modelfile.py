import json

import pytest
import torch

from CephLandmarksLib.errors import CephError
from CephLandmarksLib.network.model import build_model
from CephLandmarksLib.store.modelfile import ModelInfo, load_model, save_model


@pytest.fixture(scope="module")
def model_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("m") / "m.safetensors"
    torch.manual_seed(0)
    save_model(path, build_model(), ModelInfo(name="t", input_size=(64, 96), temperatures=[1.5] * 19))
    return path


def test_round_trip_keeps_weights_and_metadata(model_file):
    m = load_model(model_file)
    assert m.info.input_size == (64, 96) and m.info.temperatures == [1.5] * 19 and not m.half
    torch.manual_seed(0)
    ref = build_model().state_dict()
    for k, v in m.net.state_dict().items():
        assert torch.equal(v, ref[k]), k
    assert len(m.sha256) == 64 and not m.net.training


def test_half_precision_file_is_smaller_and_close(model_file, tmp_path):
    m = load_model(model_file)
    save_model(tmp_path / "h.safetensors", m.net, m.info, half=True)
    h = load_model(tmp_path / "h.safetensors")
    assert h.half and (tmp_path / "h.safetensors").stat().st_size < 0.6 * model_file.stat().st_size
    x = torch.rand(1, 1, 96, 64)
    assert torch.allclose(m.net(x), h.net(x), atol=0.05)


def test_bad_model_files(model_file, tmp_path):
    data = model_file.read_bytes()
    (tmp_path / "trunc.safetensors").write_bytes(data[: len(data) // 2])
    (tmp_path / "junk.safetensors").write_bytes(b"\x00" * 100)
    cases = {"trunc.safetensors": "not a readable model file", "junk.safetensors": "not a readable model file",
             "missing.safetensors": "not found"}
    # A flipped byte inside the weights: readable, but the checksum no longer matches.
    flipped = bytearray(data)
    flipped[-1000] ^= 0xFF
    (tmp_path / "flip.safetensors").write_bytes(bytes(flipped))
    cases["flip.safetensors"] = "checksum"
    # A foreign safetensors file (e.g. from another project).
    from safetensors.torch import save_file

    save_file({"w": torch.zeros(3)}, str(tmp_path / "foreign.safetensors"))
    cases["foreign.safetensors"] = "not a CephLandmarks model"
    # A pickle checkpoint is never unpickled.
    torch.save({"model": 1}, tmp_path / "pickle.safetensors")
    cases["pickle.safetensors"] = "not a readable model file"
    for name, message in cases.items():
        with pytest.raises(CephError, match=message):
            load_model(tmp_path / name)


def test_metadata_is_json_under_our_key(model_file):
    from safetensors import safe_open

    with safe_open(str(model_file), "pt") as f:
        meta = json.loads(f.metadata()["ceph_landmarks"])
    assert meta["format"] == "ceph-landmarks-model/2" and len(meta["landmark_names"]) == 19
    assert len(meta["metadata_sha256"]) == 64 and len(meta["weights_sha256"]) == 64
