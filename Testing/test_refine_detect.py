"""The second stage wired into detection (`detect --refine`, `report --refine`, `evaluate --refine`):
the tiny model and a tiny refiner of random weights (the wiring does not need a trained one)."""

import json

import numpy as np
import pytest
import SimpleITK as sitk
import torch

from CephLandmarksLib import cli
from CephLandmarksLib.detection import combined_map as cmap
from CephLandmarksLib.detection.result import load_detection
from CephLandmarksLib.network.refiner import RefinerNet
from CephLandmarksLib.store.refinerfile import RefinerInfo, save_refiner
from CephLandmarksLib.store.registry import REFINER_SUFFIX, default_model_path, refiner_beside

SPACING = 0.5  # the synthetic dataset's


def run(capsys, *argv):
    code = cli.main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def write_refiner(path, abbreviations, min_inside_mass=0.5, seed=0):
    """A refiner of random weights: 8 mm crops (32 px at 0.25 mm)."""
    torch.manual_seed(seed)
    net = RefinerNet(len(abbreviations), (8, 16, 16, 16))
    save_refiner(path, net, RefinerInfo(list(abbreviations), crop_size=32, crop_mm_per_px=0.25,
                                        channels=[8, 16, 16, 16], temperatures=[0.2] * len(abbreviations),
                                        min_inside_mass=min_inside_mass,
                                        base_model={"name": "tiny", "file_sha256": "0" * 64}))
    return path


def abbreviations(model):
    from CephLandmarksLib.store.modelfile import load_model

    info = load_model(model).info
    return info.landmark_abbreviations or info.landmark_names


@pytest.fixture(scope="module")
def tiny_refiner(tiny_model, tmp_path_factory):
    """Takes every fine point: the tiny model's coarse maps are nearly flat (2 % of their mass in a crop)."""
    return write_refiner(tmp_path_factory.mktemp("refiner") / "tiny.refiner.safetensors", abbreviations(tiny_model),
                         min_inside_mass=0.0)


@pytest.fixture(scope="module")
def case(generic_dataset, tmp_path_factory):
    """An image the tiny model never trained on, with its spacing in the file."""
    img = sitk.ReadImage(str(generic_dataset / "img09.png"))
    img.SetSpacing((SPACING, SPACING))
    path = tmp_path_factory.mktemp("case") / "case.nrrd"
    sitk.WriteImage(img, str(path))
    return path


def test_detect_refine_reads_the_combined_map_everywhere(tiny_model, tiny_refiner, case, tmp_path, capsys):
    code, _, err = run(capsys, "detect", case, "--model", tiny_model, "--out-dir", tmp_path / "coarse", "--heatmaps")
    assert code == 0, err
    code, _, err = run(capsys, "detect", case, "--model", tiny_model, "--out-dir", tmp_path / "fine", "--heatmaps",
                       "--refine", tiny_refiner)
    assert code == 0, err
    coarse = json.loads((tmp_path / "coarse" / "case.json").read_text())
    fine = json.loads((tmp_path / "fine" / "case.json").read_text())
    assert "refiner" not in coarse and all("refined" not in lm for lm in coarse["landmarks"])

    rec = fine["refiner"]
    assert rec["file"] == tiny_refiner.name and len(rec["sha256"]) == 64 and rec["crop_mm"] == 8.0
    refined = [lm["refined"] for lm in fine["landmarks"]]
    assert refined == [not lm.get("missing", False) for lm in fine["landmarks"]] and rec["refined"] == sum(refined)
    assert rec["outside_crop"] == [] and not any("outside_crop" in lm["flag_reasons"] for lm in fine["landmarks"])

    # the format 2 heatmaps file, read back as the detection's combined map
    with np.load(tmp_path / "fine" / "case.heatmaps.npz") as z:
        assert str(z["format"]) == cmap.FORMAT and z["fine"].shape == (19, 32, 32)
    with np.load(tmp_path / "coarse" / "case.heatmaps.npz") as z:
        assert "format" not in z.files and "fine" not in z.files  # format 1, as before
    d = load_detection(tmp_path / "fine" / "case.json")
    cm = d.combined
    assert isinstance(cm, cmap.CombinedMap) and [lm.refined for lm in d.landmarks] == refined
    np.testing.assert_allclose(d.probs, cm.coarse)

    # points moved only within their crops, which are centred on the first stage's points
    for c, f, crop in zip(coarse["landmarks"], fine["landmarks"], cm.crops, strict=True):
        if c.get("missing"):
            continue
        first = np.array([c["x_px"], c["y_px"]])
        np.testing.assert_allclose(crop.centre_px, first, atol=2e-3)
        point = np.array([f["x_px"], f["y_px"]])
        if f["refined"]:
            assert crop.contains(point)
        else:
            np.testing.assert_allclose(point, first, atol=2e-3)
    moved = [np.hypot(c["x_px"] - f["x_px"], c["y_px"] - f["y_px"]) for c, f in
             zip(coarse["landmarks"], fine["landmarks"], strict=True) if f["refined"]]
    assert max(moved) > 0.1  # the fine maps did move them

    # ERE and P(error > 4 mm) are the combined map's, not the coarse map's
    ere, p = cmap.ere_and_p_large(cm)
    assert [lm["ere_mm"] for lm in fine["landmarks"]] == pytest.approx(ere, abs=2e-3)
    assert [lm["p_large_error"] for lm in fine["landmarks"]] == pytest.approx(p, abs=2e-6)
    assert [lm["ere_mm"] for lm in fine["landmarks"]] != pytest.approx([lm["ere_mm"] for lm in coarse["landmarks"]],
                                                                       abs=1e-2)
    for lm, i in ((lm, k) for k, lm in enumerate(fine["landmarks"]) if "region_90_area_mm2" in lm):
        area, reach = cmap.region_extent(cm, i, fine["regions"]["masses"]["90"][i])
        assert lm["region_90_area_mm2"] == pytest.approx(area, abs=2e-3)
        assert lm["region_90_max_distance_mm"] == pytest.approx(reach, abs=2e-3)

    # the measurement intervals are sampled from the combined map, and the reader recomputes them alike
    from CephLandmarksLib.cephalometry.measurement_uncertainty import COMBINED_METHOD, corrected_measurements_json

    assert fine["measurements"]["method"]["method"] == COMBINED_METHOD
    again = corrected_measurements_json(d, d.points_px * SPACING)
    assert [i["p95"] for i in again["items"]] == [i["p95"] for i in fine["measurements"]["items"]]
    assert [i["p95"] for i in fine["measurements"]["items"]] != [i["p95"] for i in coarse["measurements"]["items"]]


def test_coarse_mass_outside_the_crop_keeps_the_coarse_point(tiny_model, case, tmp_path, capsys):
    strict = write_refiner(tmp_path / "strict.safetensors", abbreviations(tiny_model), min_inside_mass=1.0)
    code, _, err = run(capsys, "detect", case, "--model", tiny_model, "--out-dir", tmp_path / "coarse", "--no-overlay")
    assert code == 0, err
    code, _, err = run(capsys, "detect", case, "--model", tiny_model, "--out-dir", tmp_path / "fine", "--no-overlay",
                       "--refine", strict)
    assert code == 0, err
    coarse = json.loads((tmp_path / "coarse" / "case.json").read_text())["landmarks"]
    fine = json.loads((tmp_path / "fine" / "case.json").read_text())
    assert fine["refiner"]["refined"] == 0
    assert fine["refiner"]["outside_crop"] == [lm["abbreviation"] for lm in coarse if not lm.get("missing")]
    for c, f in zip(coarse, fine["landmarks"], strict=True):
        assert f["refined"] is False and (c["x_px"], c["y_px"]) == (f["x_px"], f["y_px"])
        assert f["flagged"] and ("outside_crop" in f["flag_reasons"]) == (not c.get("missing", False))


def test_report_and_evaluate_take_the_refiner(tiny_model, tiny_refiner, case, generic_dataset, tmp_path, capsys):
    code, out, err = run(capsys, "report", case, "--model", tiny_model, "--out-dir", tmp_path, "--refine", tiny_refiner)
    assert code == 0, err
    assert (tmp_path / "case_report.pdf").is_file()
    code, out, err = run(capsys, "evaluate", "--model", tiny_model, "--dataset", generic_dataset, "--split", "test1",
                         "--out", tmp_path / "eval", "--refine", tiny_refiner)
    assert code == 0, err
    m = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert m["refiner"]["file"] == tiny_refiner.name and "outside_crop" in m["flagged_by_reason_percent"]


def test_refiner_for_other_landmarks_is_one_line(tiny_model, case, tmp_path, capsys):
    other = write_refiner(tmp_path / "other.safetensors", [f"X{i}" for i in range(19)])
    assert list(abbreviations(tiny_model)) != [f"X{i}" for i in range(19)]
    code, out, err = run(capsys, "detect", case, "--model", tiny_model, "--out-dir", tmp_path, "--refine", other)
    assert code == 2 and len(err.strip().splitlines()) == 1 and "other landmarks" in err
    assert not list(tmp_path.glob("case*"))


# --- fast: the option is checked before any image is read --------------------------------------------------

@pytest.mark.parametrize("command", ["detect", "report", "evaluate"])
def test_bad_refiner_is_one_line_before_any_image_is_read(command, tmp_path, capsys):
    (tmp_path / "junk.safetensors").write_bytes(b"not a safetensors file at all")
    (tmp_path / "folder").mkdir()
    args = {"detect": ["detect", tmp_path / "no-such-image.png", "--out-dir", tmp_path],
            "report": ["report", tmp_path / "no-such-image.png", "--out-dir", tmp_path],
            "evaluate": ["evaluate", "--dataset", tmp_path / "no-such-dataset", "--out", tmp_path / "e"]}[command]
    model = tmp_path / "m.safetensors"  # never read: the refiner is checked first
    for refine, said in ((tmp_path / "none.safetensors", "refiner file not found"),
                         (tmp_path / "junk.safetensors", "not a readable refiner file"),
                         (tmp_path / "folder", "is a folder"),
                         ("auto", "no refiner beside the model")):
        code, out, err = run(capsys, *args, "--model", model, "--refine", refine)
        assert code == 2, (refine, err)
        assert len(err.strip().splitlines()) == 1 and said in err and "no-such" not in err, err
        assert out == ""


def test_a_refiner_beside_the_model_is_no_model(tmp_path):
    (tmp_path / "isbi.safetensors").write_bytes(b"")
    (tmp_path / f"isbi{REFINER_SUFFIX}").write_bytes(b"")  # sorts before isbi.safetensors
    assert default_model_path(tmp_path).name == "isbi.safetensors"
    assert refiner_beside(tmp_path / "isbi.safetensors") == tmp_path / f"isbi{REFINER_SUFFIX}"


def test_a_fitted_refiner_brings_its_flag_threshold_and_regions(tiny_model, tmp_path):
    """The refiner's two-stage settings replace the first stage's, but not an adaptation's fitted with it."""
    from dataclasses import replace

    from CephLandmarksLib.detection.predictor import LandmarkDetector, Settings
    from CephLandmarksLib.store.refinerfile import load_refiner, save_refiner_settings

    path = write_refiner(tmp_path / "r.refiner.safetensors", abbreviations(tiny_model))
    plain = load_refiner(path)
    base = LandmarkDetector(tiny_model).settings
    unfitted = LandmarkDetector(tiny_model, refiner=plain).settings  # not fitted: the model's own
    assert unfitted.ere_threshold_mm == base.ere_threshold_mm and unfitted.regions == base.regions
    masses = {"50": [0.4] * 19, "90": [0.8] * 19}
    save_refiner_settings(path, plain, replace(plain.info, ere_threshold_mm=0.7, region_masses=masses))
    fitted = load_refiner(path)
    assert fitted.net.state_dict().keys() == plain.net.state_dict().keys()
    ours, theirs = fitted.net.state_dict(), plain.net.state_dict()
    assert all(torch.equal(ours[k], theirs[k]) for k in ours)
    det = LandmarkDetector(tiny_model, refiner=fitted)
    assert det.settings.ere_threshold_mm == 0.7 and det.settings.regions == "split-conformal"
    np.testing.assert_allclose(det.settings.region_masses["90"], 0.8)
    own = Settings.of(det.info)
    assert own.for_two_stages(det.info, fitted).ere_threshold_mm == 0.7  # a plain model: the refiner's
    det.model.info.adaptation = {"refiner_sha256": fitted.sha256}  # adapted with this refiner: its own settings
    assert own.for_two_stages(det.info, fitted) is own


def test_the_refiner_beside_the_model_is_the_default(tiny_model, case, tmp_path, capsys):
    """No --refine: the refiner beside the model runs; --refine none: the first stage alone; a clinic
    adaptation fitted without that refiner keeps the first stage."""
    import shutil

    from CephLandmarksLib.files import file_sha256
    from CephLandmarksLib.store.registry import default_refiner, read_model_info
    from CephLandmarksLib.store.sidecar import write_sidecar

    model = tmp_path / "m.safetensors"
    shutil.copyfile(tiny_model, model)
    assert default_refiner(model) is None
    code, out, err = run(capsys, "detect", case, "--model", model, "--out-dir", tmp_path / "a", "--no-overlay")
    assert code == 0 and "refiner" not in json.loads((tmp_path / "a" / "case.json").read_text())
    write_refiner(refiner_beside(model), abbreviations(tiny_model), min_inside_mass=0.0)
    assert default_refiner(model) == refiner_beside(model)
    code, out, err = run(capsys, "detect", case, "--model", model, "--out-dir", tmp_path / "b", "--no-overlay")
    assert code == 0, err
    assert json.loads((tmp_path / "b" / "case.json").read_text())["refiner"]["file"] == refiner_beside(model).name
    code, out, err = run(capsys, "detect", case, "--model", model, "--out-dir", tmp_path / "c", "--no-overlay",
                         "--refine", "none")
    assert code == 0 and "refiner" not in json.loads((tmp_path / "c" / "case.json").read_text())

    sidecar = tmp_path / "m.clinic.json"  # an adapted model (a sidecar of the same weights)
    meta = read_model_info(model)
    for fitted_with, expected in ((None, None), (file_sha256(refiner_beside(model)), refiner_beside(model))):
        adaptation = {"base_sha256": "0" * 64, "n_images": 10}
        if fitted_with:
            adaptation["refiner_sha256"] = fitted_with
        write_sidecar(sidecar, model, dict(meta, adaptation=adaptation))
        assert default_refiner(sidecar) == expected


def test_an_assumed_spacing_crops_at_the_scale_the_coarse_pass_gave_the_image(tiny_model, tiny_refiner,
                                                                              generic_dataset):
    """Fit-width framing (no spacing): the crops cut the anatomy at the refiner's size as the coarse pass
    believes it (the model's mm per pixel times the frame's scale), not at the assumed 0.1 mm; with a known
    spacing, at that spacing."""
    from CephLandmarksLib.detection.predictor import LandmarkDetector
    from CephLandmarksLib.imaging.images import read_radiograph

    det = LandmarkDetector(tiny_model, refiner=tiny_refiner)
    image = generic_dataset / "img09.png"
    crop_mm = det.refiner.info.crop_mm_per_px
    for spacing in (None, SPACING):
        rad = read_radiograph(image, spacing)
        obs = det.observe(rad)
        crop = obs.fine.crops[0]
        believed = np.asarray(rad.spacing_mm) if spacing else det.mm_per_px * np.asarray(obs.frame.scale)
        # crop pixels per image pixel (square crop pixels: the mean of the frame's two, equal to 0.2 %)
        np.testing.assert_allclose(crop.scale, believed.mean() / crop_mm, rtol=1e-4)
        np.testing.assert_allclose(crop.spacing_mm, rad.spacing_mm)  # millimetres stay the image's
    assert read_radiograph(image).spacing_source == "assumed"
