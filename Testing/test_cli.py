import json
import subprocess
import sys

import numpy as np
import pytest
import SimpleITK as sitk

from CephLandmarksLib import cli
from CephLandmarksLib.imaging.geometry import px_to_lps


def run(capsys, *argv):
    code = cli.main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_detect_writes_json_markups_and_png(tiny_model, generic_dataset, tmp_path, capsys):
    img = sitk.ReadImage(str(generic_dataset / "img08.png"))
    img.SetSpacing((0.3, 0.3))
    img.SetOrigin((10.0, -5.0))
    sitk.WriteImage(img, str(tmp_path / "case.nrrd"))
    code, out, err = run(capsys, "detect", tmp_path / "case.nrrd", "--model", tiny_model, "--out-dir", tmp_path / "o")
    assert code == 0, err
    d = json.loads((tmp_path / "o" / "case.json").read_text())
    assert d["spacing_mm"] == [0.3, 0.3] and d["spacing_source"] == "file"
    assert set(d["model"]) == {"name", "version", "sha256", "settings"} and len(d["model"]["sha256"]) == 64
    assert d["model"]["settings"]["source"] == "weights file"  # no sidecar beside the tiny model
    lms = d["landmarks"]
    assert [lm["index"] for lm in lms] == list(range(1, 20))
    keys = {"index", "name", "abbreviation", "x_px", "y_px", "x_mm", "y_mm", "confidence", "ere_mm", "flagged",
            "p_large_error", "flag_reasons", "region_90_area_mm2", "region_90_max_distance_mm"}
    assert all(set(lm) == keys for lm in lms)
    # fitted by train:
    assert d["regions"]["method"] == "split-conformal" and set(d["regions"]["masses"]) == {"50", "90"}
    assert d["large_error_mm"] == 4.0
    alignment = d.get("alignment", {})
    implausible = set(alignment.get("implausible", [])) | set(alignment.get("near_edge", []))
    for lm in lms:
        assert 0 <= lm["x_px"] < 96 and 0 <= lm["y_px"] < 120 and 0 < lm["confidence"] <= 1 and lm["ere_mm"] >= 0
        assert 0 <= lm["p_large_error"] <= 1
        assert lm["x_mm"] == pytest.approx(lm["x_px"] * 0.3, abs=2e-3)
        rule = lm["ere_mm"] > d["ere_threshold_mm"]
        assert lm["flagged"] == (rule or lm.get("missing", False) or lm["abbreviation"] in implausible)
        assert lm["flagged"] == bool(lm["flag_reasons"]) and (("uncertain" in lm["flag_reasons"]) == rule)
        # The 90 % region reaches at least as far as its area's equivalent disc, and lies on the map.
        assert lm["region_90_max_distance_mm"] >= np.sqrt(lm["region_90_area_mm2"] / np.pi) - 0.3
    mrk = json.loads((tmp_path / "o" / "case.mrk.json").read_text())["markups"][0]
    assert mrk["type"] == "Fiducial" and mrk["coordinateSystem"] == "LPS"
    pts = mrk["controlPoints"]
    assert [p["label"] for p in pts][:3] == ["S", "N", "Or"]
    expected = px_to_lps([[lm["x_px"], lm["y_px"]] for lm in lms], (0.3, 0.3), (10.0, -5.0, 0.0), np.eye(3).ravel())
    np.testing.assert_allclose([p["position"] for p in pts], expected, atol=2e-3)
    assert [not p["selected"] for p in pts] == [lm["flagged"] for lm in lms]
    png = (tmp_path / "o" / "case.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    assert out.split() == [str(tmp_path / "o" / f"case{s}") for s in (".json", ".mrk.json", ".png")]


def test_detect_says_when_spacing_is_assumed(tiny_model, generic_dataset, tmp_path, capsys):
    code, _, err = run(capsys, "detect", generic_dataset / "img09.png", "--model", tiny_model, "--out-dir", tmp_path)
    assert code == 0, err
    d = json.loads((tmp_path / "img09.json").read_text())
    assert d["spacing_source"] == "assumed" and "0.1 mm" in d["warnings"][0]
    code, _, _ = run(capsys, "detect", generic_dataset / "img09.png", "--model", tiny_model, "--out-dir", tmp_path,
                     "--spacing", "0.2")
    assert json.loads((tmp_path / "img09.json").read_text())["spacing_mm"] == [0.2, 0.2]


def _assert_clean_failure(code, err, out_dir, needle):
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("ceph-landmarks: error:") and needle in lines[0], err
    assert "Traceback" not in err
    assert not out_dir.exists() or not any(out_dir.iterdir())


def test_detect_bad_inputs(tiny_model, generic_dataset, tmp_path, capsys):
    out = tmp_path / "out"
    (tmp_path / "corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    (tmp_path / "bad.safetensors").write_bytes(b"{}")
    cases = [
        (["detect", tmp_path / "missing.png", "--model", tiny_model], "image not found"),
        (["detect", tmp_path / "corrupt.png", "--model", tiny_model], "cannot read image"),
        (["detect", generic_dataset / "img08.png", "--model", tmp_path / "bad.safetensors"], "not a readable model"),
        (["detect", generic_dataset / "img08.png", "--model", tmp_path / "none.safetensors"], "model file not found"),
    ]
    for argv, needle in cases:
        code, _, err = run(capsys, *argv, "--out-dir", out)
        _assert_clean_failure(code, err, out, needle)


def test_no_default_model_is_a_clear_message(monkeypatch, generic_dataset, tmp_path, capsys):
    monkeypatch.setattr(cli, "DEFAULT_MODEL_DIR", tmp_path / "empty")
    code, _, err = run(capsys, "detect", generic_dataset / "img08.png", "--out-dir", tmp_path / "o")
    _assert_clean_failure(code, err, tmp_path / "o", "no default model")


def test_bad_options_exit_non_zero(capsys):
    assert cli.main(["detect", "x.png", "--spacing", "-1"]) == 2
    err = capsys.readouterr().err
    assert "positive" in err and "--spacing" in err and err.count("\n") == 1


def test_evaluate_and_calibrate(tiny_model, generic_dataset, tmp_path, capsys):
    code, out, err = run(capsys, "evaluate", "--model", tiny_model, "--dataset", generic_dataset, "--split", "test1",
                         "--out", tmp_path / "ev")
    assert code == 0, err
    m = json.loads((tmp_path / "ev" / "metrics.json").read_text())
    for key in ("n_images", "mre_mm", "mre_std_mm", "sdr", "per_landmark", "ece", "ece_uncalibrated",
                "ere_error_pearson", "roc_auc_2mm", "roc_auc_4mm", "ere_threshold_mm", "p_large_error_roc_auc_4mm",
                "p_large_error_reliability"):
        assert key in m, key
    assert sum(m["p_large_error_reliability"]["counts"]) == 2 * 19
    assert m["n_images"] == 2 and set(m["sdr"]) == {"2.0", "2.5", "3.0", "4.0"} and len(m["per_landmark"]) == 19
    assert isinstance(m["ece"], float) and isinstance(m["ece_uncalibrated"], float)  # never NaN/null
    json.loads((tmp_path / "ev" / "metrics.json").read_text(), parse_constant=lambda c: pytest.fail(c))
    for png in ("reliability.png", "ere_vs_error.png", "roc.png"):
        assert (tmp_path / "ev" / png).read_bytes()[:4] == b"\x89PNG"
    copy = tmp_path / "copy.safetensors"
    copy.write_bytes(tiny_model.read_bytes())
    code, _, err = run(capsys, "calibrate", "--model", copy, "--dataset", generic_dataset)
    assert code == 0 and "calibrated on 2 held-out images" in err


def test_module_entry_point_prints_no_traceback(tmp_path):
    r = subprocess.run([sys.executable, "-m", "CephLandmarksLib", "detect", str(tmp_path / "nope.png"),
                        "--model", str(tmp_path / "nope.safetensors")], capture_output=True, text=True)
    assert r.returncode == 2 and "Traceback" not in r.stderr and "model file not found" in r.stderr
