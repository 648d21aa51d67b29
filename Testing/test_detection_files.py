"""The files that carry a detection between processes (the Slicer module runs `detect` in a
PythonSlicer process): NAME.radiograph.npz in, JSON + NAME.heatmaps.npz out, read without torch."""

import json
import subprocess
import sys

import numpy as np
import pytest
from slicer_fixtures import syntheticDetection

from CephLandmarksLib.cli import main
from CephLandmarksLib.detection.result import load_detection, save_heatmaps
from CephLandmarksLib.imaging.images import Radiograph, read_radiograph, save_radiograph


def test_heatmaps_round_trip_keeps_points_maps_frame_and_contours(tmp_path):
    detection = syntheticDetection(flagged=(3, 7))
    (tmp_path / "x.json").write_text(json.dumps(detection.to_json_dict()))
    save_heatmaps(tmp_path / "x.heatmaps.npz", detection)
    back = load_detection(tmp_path / "x.json")
    assert back.frame == detection.frame
    np.testing.assert_array_equal(back.probs, np.asarray(detection.probs, dtype=np.float32))
    for a, b in zip(back.landmarks, detection.landmarks, strict=True):
        assert (a.abbreviation, a.flagged) == (b.abbreviation, b.flagged)
        assert a.x_px == pytest.approx(b.x_px, abs=1e-3) and a.ere_mm == pytest.approx(b.ere_mm, abs=1e-3)
        assert set(a.contours_px) == set(b.contours_px)
        for level in b.contours_px:
            for ca, cb in zip(a.contours_px[level], b.contours_px[level], strict=True):
                np.testing.assert_allclose(ca, cb)
    assert back.to_json_dict()["landmarks"] == detection.to_json_dict()["landmarks"]


def test_detection_files_load_without_torch(tmp_path):
    detection = syntheticDetection()
    (tmp_path / "x.json").write_text(json.dumps(detection.to_json_dict()))
    save_heatmaps(tmp_path / "x.heatmaps.npz", detection)
    code = ("import sys; sys.modules['torch'] = None; from CephLandmarksLib.detection.result import load_detection; "
            f"d = load_detection({str(tmp_path / 'x.json')!r}); print(len(d.landmarks), d.probs.shape[0])")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-600:]
    assert r.stdout.split() == ["19", "19"]


def test_radiograph_file_keeps_an_assumed_spacing_assumed(tmp_path):
    pixels = np.random.default_rng(0).uniform(0, 255, (40, 32)).astype(np.float32)
    rad = Radiograph(pixels, (0.1, 0.1), "assumed", "scan.png", (1.0, 2.0, 0.0), (-1, 0, 0, 0, 1, 0, 0, 0, 1))
    save_radiograph(tmp_path / "scan.radiograph.npz", rad)
    back = read_radiograph(tmp_path / "scan.radiograph.npz")
    np.testing.assert_array_equal(back.pixels, pixels)
    assert (back.spacing_mm, back.spacing_source, back.path) == ((0.1, 0.1), "assumed", "scan.png")
    assert back.origin_lps == (1.0, 2.0, 0.0) and back.direction_lps[0] == -1
    assert read_radiograph(tmp_path / "scan.radiograph.npz", 0.2).spacing_source == "user"


def test_a_bad_radiograph_file_is_one_line_and_exit_2(tmp_path, capsys):
    bad = tmp_path / "bad.radiograph.npz"
    bad.write_bytes(b"not a zip")
    assert main(["detect", str(bad), "--out-dir", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "not a radiograph file" in err[0]
    assert not (tmp_path / "out").exists() or not list((tmp_path / "out").iterdir())


@pytest.mark.slow
def test_detect_writes_heatmaps_and_progress(tiny_model, generic_dataset, tmp_path):
    image = generic_dataset / "img00.png"
    r = subprocess.run([sys.executable, "-m", "CephLandmarksLib", "detect", str(image), "--model", str(tiny_model),
                        "--out-dir", str(tmp_path), "--heatmaps", "--progress", "--no-overlay"],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    fractions = [float(line.split()[1]) for line in r.stderr.splitlines() if line.startswith("[progress]")]
    assert fractions[0] == 0.0 and fractions[-1] == 1.0 and fractions == sorted(fractions)
    assert not (tmp_path / "img00.png").exists()
    detection = load_detection(tmp_path / "img00.json")
    assert detection.probs.shape[0] == 19
    assert json.loads((tmp_path / "img00.json").read_text())["landmarks"] == detection.to_json_dict()["landmarks"]
