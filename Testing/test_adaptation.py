"""Clinic adaptation: conformal masses, head-frame offsets, moved heatmaps, and `ceph-landmarks adapt`
end to end on a synthetic clinic (the tiny model)."""

import csv
import itertools
import json
from dataclasses import replace

import numpy as np
import pytest
import torch

from CephLandmarksLib import cli
from CephLandmarksLib.clinic.adaptation import FLAG_SHARE, flag_threshold
from CephLandmarksLib.clinic.conventions import residuals_mm, robust_offsets
from CephLandmarksLib.errors import CephError
from CephLandmarksLib.files import file_sha256
from CephLandmarksLib.imaging.geometry import from_head_frame, head_axes, shifts_uv, to_head_frame
from CephLandmarksLib.network.heatmaps import shift_maps
from CephLandmarksLib.store.modelmeta import FLAG_P_LARGE_RANGE
from CephLandmarksLib.uncertainty.conformal import conformal_mass, covered, fit_region_masses, region_scores
from CephLandmarksLib.uncertainty.flag_score import IMAGE_WEIGHT, TYPICAL_P_LARGE, image_adjusted_p_large
from conftest import make_generic_dataset


def test_conformal_mass_is_the_rank_the_rule_names():
    scores = np.arange(1, 21) / 21  # 20 scores
    assert conformal_mass(scores, 0.9) == pytest.approx(19 / 21)  # ceil(21 * 0.9) = 19th smallest
    assert conformal_mass(scores, 0.5) == pytest.approx(11 / 21)  # ceil(21 * 0.5) = 11th
    assert conformal_mass(scores[:8], 0.9) == 1.0  # ceil(9 * 0.9) = 9 > 8: the whole map


def test_conformal_regions_cover_new_points_at_least_at_the_level():
    """Exchangeable scores: over many calibration/test draws the region holds the truth >= 90 %."""
    rng = np.random.default_rng(0)
    s = rng.beta(2, 5, size=(20000, 11))  # per trial: 10 calibration scores, 1 new
    hits = [covered(row[10], conformal_mass(row[:10], 0.9)) for row in s]
    # Exactly 10/11 in expectation with 10 scores (the 10th of 10); sampling error about 0.002.
    assert 0.90 <= np.mean(hits) <= 0.92


def test_region_scores_grow_away_from_the_peak():
    yy, xx = np.mgrid[0:40, 0:50]
    p = np.exp(-((xx - 20) ** 2 + (yy - 15) ** 2) / 18.0)
    p = torch.tensor(p / p.sum())[None].repeat(3, 1, 1)
    s = region_scores(p, np.array([[20, 15], [24, 15], [80, 15]]))
    assert s[0] < 0.05 < s[1] < 1.0 and s[2] == 1.0
    masses = fit_region_masses(np.tile(s, (20, 1)))
    assert masses["90"] == pytest.approx(list(s), abs=1e-6)


def test_head_frame_offsets_turn_with_the_head():
    sella, nasion = np.array([10.0, 20.0]), np.array([80.0, 15.0])
    axes = head_axes(sella, nasion)
    assert axes.T @ axes == pytest.approx(np.eye(2))
    assert to_head_frame(nasion - sella, axes) == pytest.approx([np.hypot(70, 5), 0])
    v = np.array([[1.5, -2.0]])
    assert from_head_frame(to_head_frame(v, axes), axes) == pytest.approx(v)
    # The same anatomy tilted by 20 degrees gives the same head-frame residuals.
    rng = np.random.default_rng(1)
    pred = rng.uniform(0, 100, (19, 2))
    pred[0], pred[1] = sella, nasion
    true = pred + rng.normal(0, 2, (19, 2))
    a = np.deg2rad(20)
    rot = np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
    r1 = residuals_mm(pred, true, (0.5, 0.5), 0, 1)
    r2 = residuals_mm(pred @ rot.T, true @ rot.T, (0.5, 0.5), 0, 1)
    assert r1 == pytest.approx(r2)
    # Applying the residuals as offsets moves each prediction onto its truth.
    assert pred + shifts_uv(pred, r1, (0.5, 0.5), 0, 1) == pytest.approx(true)


def test_robust_offsets_ignore_one_gross_error():
    res = np.zeros((11, 19, 2)) + [1.0, -0.5]
    res[3, 4] = [40.0, 40.0]
    assert robust_offsets(res)[4] == pytest.approx([1.0, -0.5])


def test_shift_maps_moves_the_mass_by_the_shift():
    p = torch.zeros(2, 20, 20, dtype=torch.float64)
    p[0, 10, 10] = 1.0
    p[1, 5:8, 5:8] = 1.0 / 9
    moved = shift_maps(p, [[1.5, -2.25], [3.0, 4.0]])
    yy, xx = torch.meshgrid(torch.arange(20.0), torch.arange(20.0), indexing="ij")
    centre = lambda m: [float((m * xx).sum()), float((m * yy).sum())]  # noqa: E731
    assert centre(moved[0]) == pytest.approx([11.5, 7.75])
    assert centre(moved[1]) == pytest.approx([9.0, 10.0])
    assert moved.sum(dim=(1, 2)) == pytest.approx(torch.ones(2, dtype=torch.float64))


def test_decide_with_offsets_moves_point_and_map(tiny_model, generic_dataset):
    from CephLandmarksLib.detection.predictor import LandmarkDetector
    from CephLandmarksLib.imaging.images import read_radiograph

    det = LandmarkDetector(tiny_model)
    obs = det.observe(read_radiograph(generic_dataset / "img00.png", 0.5))
    plain = det.decide(obs)
    offsets = np.zeros((19, 2))
    offsets[7] = [2.0, -1.0]  # Me: 2 mm along S->N, 1 mm against its normal
    moved = det.decide(obs, replace(det.settings, offsets_mm=offsets))
    still = [i for i in range(19) if i != 7]
    assert np.allclose(moved.points_px[still], plain.points_px[still], equal_nan=True)
    d_mm = (moved.points_px[7] - plain.points_px[7]) * 0.5
    assert np.hypot(*d_mm) == pytest.approx(np.hypot(2.0, 1.0), abs=1e-6)
    # The map moved with the point: it is the plain map shifted by the point's move (model pixels).
    f = moved.frame
    shift = f.image_to_model(moved.points_px[7]) - f.image_to_model(plain.points_px[7])
    expected = shift_maps(torch.as_tensor(plain.probs[7:8]), [shift])[0].numpy()
    assert np.abs(moved.probs[7] - expected).max() < 1e-6 * plain.probs[7].max() + 1e-9
    assert np.abs(moved.probs[7] - plain.probs[7]).max() > 1e-3 * plain.probs[7].max()


def test_probability_flag_rule_flags_exactly_the_points_over_it(tiny_model, generic_dataset):
    """With flag_p_large_min (adapted models) "uncertain" means P(error > 4 mm) >= it, whatever the ERE."""
    from CephLandmarksLib.detection.predictor import LandmarkDetector
    from CephLandmarksLib.imaging.images import read_radiograph

    det = LandmarkDetector(tiny_model)
    obs = det.observe(read_radiograph(generic_dataset / "img00.png", 0.5))
    p = np.array([lm.p_large_error for lm in det.decide(obs).landmarks])
    threshold = float(np.median(p))
    d = det.decide(obs, replace(det.settings, flag_p_large_min=threshold, ere_threshold_mm=1e-3))
    uncertain = np.array(["uncertain" in lm.flag_reasons for lm in d.landmarks])
    assert np.array_equal(uncertain, p >= threshold) and 0 < uncertain.sum() < 19
    assert d.to_json_dict()["flag_rule"] == {"score": "p_large_error", "threshold": threshold}
    assert d.flag_rule_text() == f"P(error > 4 mm) ≥ {100 * threshold:.3g} %"
    fitted = det.decide(obs, replace(det.settings, flag_p_large_min=0.0138123))
    assert fitted.flag_rule_text() == "P(error > 4 mm) ≥ 1.38 %"  # a fitted threshold, readable in the PDF
    ere_rule = det.decide(obs).to_json_dict()["flag_rule"]
    assert ere_rule == {"score": "ere_mm", "threshold": round(det.settings.ere_threshold_mm, 4)}


def test_image_weighted_flag_rule_flags_the_adjusted_points(tiny_model, generic_dataset):
    """With flag_image_weight, "uncertain" means P(error > 4 mm) adjusted for the image's other points
    >= the threshold; the JSON and the rule's words say so."""
    from CephLandmarksLib.detection.predictor import LandmarkDetector
    from CephLandmarksLib.imaging.images import read_radiograph

    det = LandmarkDetector(tiny_model)
    obs = det.observe(read_radiograph(generic_dataset / "img00.png", 0.5))
    p = np.array([lm.p_large_error for lm in det.decide(obs).landmarks])
    adjusted = image_adjusted_p_large(p, 0.5)
    threshold = float(np.median(adjusted))
    d = det.decide(obs, replace(det.settings, flag_p_large_min=threshold, flag_image_weight=0.5))
    uncertain = np.array(["uncertain" in lm.flag_reasons for lm in d.landmarks])
    assert np.array_equal(uncertain, adjusted >= threshold) and 0 < uncertain.sum() < 19
    assert d.to_json_dict()["flag_rule"] == {"score": "p_large_error", "threshold": threshold, "image_weight": 0.5}
    assert d.flag_rule_text() == f"P(error > 4 mm), weighed with the image's other points, ≥ {100 * threshold:.3g} %"
    np.testing.assert_allclose(d.flag_fractions(), adjusted / threshold)  # what colours the overlay
    assert np.array_equal(d.flag_fractions() >= 1, uncertain)


def test_the_overlay_colours_points_by_the_rule_that_flags_them(tmp_path):
    """A point whose ERE is over the base threshold but whose P(error > 4 mm) is under an adapted model's
    is drawn green, not red, by that model's overlay; under the ERE rule the same point is red."""
    from PIL import Image
    from slicer_fixtures import syntheticDetection

    from CephLandmarksLib.outputs.plots import render_overlay

    base = syntheticDetection(flagged=())
    lms = list(base.landmarks)
    lms[4] = replace(lms[4], ere_mm=3 * base.ere_threshold_mm)  # its P stays 0.001
    colours = {}
    for name, rule in (("adapted", {"score": "p_large_error", "threshold": 0.02}), ("shipped", {})):
        d = replace(base, landmarks=lms, flag_rule=rule)
        render_overlay(np.zeros(base.image_size[::-1], np.float32), d, tmp_path / f"{name}.png", labels=False)
        rgb = np.asarray(Image.open(tmp_path / f"{name}.png").convert("RGB")).astype(int)
        colours[name] = rgb[round(lms[4].y_px), round(lms[4].x_px)]
    assert colours["adapted"][1] > colours["adapted"][0] + 60  # green
    assert colours["shipped"][0] > colours["shipped"][1] + 60  # red


def test_the_overlay_caption_stays_on_a_narrow_picture(tmp_path):
    """An adapted model's long flag rule and a list of missing landmarks, under a 2-inch-wide picture:
    every caption line is wrapped inside the figure and the lines do not overlap."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from slicer_fixtures import syntheticDetection

    from CephLandmarksLib.outputs.plots import overlay_figure

    base = syntheticDetection(flagged=())
    lms = [replace(lm, missing=lm.index in (1, 2, 3)) for lm in base.landmarks]
    d = replace(base, landmarks=lms, flag_rule={"score": "p_large_error", "threshold": 0.0204, "image_weight": 0.5})
    fig = overlay_figure(np.zeros(base.image_size[::-1], np.float32), d)
    renderer = FigureCanvasAgg(fig).get_renderer()
    boxes = [t.get_window_extent(renderer) for t in fig.texts]
    assert len(boxes) >= 4  # the missing landmarks' line and the rule, wrapped
    assert all(0 <= b.x0 and b.x1 <= fig.bbox.width and b.y0 >= 0 for b in boxes)
    assert all(upper.y0 >= lower.y1 - 1 for upper, lower in itertools.pairwise(boxes))
    assert "≥ 2.04 %" in " ".join(t.get_text() for t in fig.texts)


def test_image_adjusted_p_large_moves_points_by_their_images_other_points():
    """A typical image's points keep their P; a point on a hard image (others' P high) rises, one on an easy
    image falls; the order within an image is kept; NaN points stay NaN and do not count; weight 0 is P."""
    typical = np.full(19, TYPICAL_P_LARGE)
    typical[3] = 0.02
    assert image_adjusted_p_large(typical)[3] == pytest.approx(0.02)
    hard, easy = np.full(19, 0.05), np.full(19, 1e-5)
    hard[3] = easy[3] = 0.02
    assert image_adjusted_p_large(hard)[3] > 0.05 and image_adjusted_p_large(easy)[3] < 0.005
    rng = np.random.default_rng(1)
    p = rng.random((4, 19)) ** 4
    a = image_adjusted_p_large(p)
    assert all(np.array_equal(np.argsort(row), np.argsort(p[i])) for i, row in enumerate(a))
    p[0, 5] = np.nan
    a = image_adjusted_p_large(p)
    assert np.isnan(a[0, 5]) and np.isfinite(np.delete(a[0], 5)).all()
    assert np.allclose(image_adjusted_p_large(p, 0.0)[1:], p[1:])


def test_a_point_left_uncounted_does_not_weigh_on_its_images_others():
    """A cut-off landmark's vague map (counted=False) leaves the others' adjusted P as if it were absent,
    and is itself still weighed with them."""
    p = np.full(19, TYPICAL_P_LARGE)
    p[3] = 0.9
    counted = np.ones(19, bool)
    counted[3] = False
    kept = image_adjusted_p_large(p, 0.5, counted)
    assert np.allclose(np.delete(kept, 3), TYPICAL_P_LARGE)
    assert np.all(np.delete(image_adjusted_p_large(p, 0.5), 3) > 1.2 * TYPICAL_P_LARGE)  # counted, it lifts them
    assert kept[3] == pytest.approx(0.9)  # the others are typical: its own P


def test_flag_threshold_flags_the_share_of_points_it_was_fitted_on():
    """The adapted flag threshold flags FLAG_SHARE of the points it is fitted on (P adjusted for each image's
    other points), whatever their scale (sharper maps, smaller P), ignores NaN, stays in the model file's
    range, and refuses nothing to fit."""
    rng = np.random.default_rng(0)
    for scale in (0.01, 0.1):  # a sharp and a broad clinic
        p = scale * rng.random((20, 19)) ** 3
        t = flag_threshold(np.where(rng.random(p.shape) < 0.05, np.nan, p))
        assert abs((image_adjusted_p_large(p) >= t).mean() - FLAG_SHARE) < 0.02
        assert abs((p >= flag_threshold(p, image_weight=0.0)).mean() - FLAG_SHARE) < 0.02
    assert flag_threshold(np.full(50, 1e-9)) == FLAG_P_LARGE_RANGE[0]
    assert flag_threshold(np.full(50, 0.9)) == FLAG_P_LARGE_RANGE[1]
    with pytest.raises(CephError):
        flag_threshold(np.full(5, np.nan))


def test_adapt_fits_the_threshold_on_the_cross_validated_points(tiny_model, tmp_path, monkeypatch):
    """The flag threshold is flag_threshold of P(error > 4 mm): for the final settings, of the clinic's
    cross-validated reading (the one that chose the method); for a plain fit, of its own points.  Never a
    fixed probability.  (The tiny model's maps are so broad that its thresholds meet the model file's
    cap; the cap is lifted here so that the two readings' thresholds differ.)"""
    from CephLandmarksLib.annotations.datasets import load_dataset
    from CephLandmarksLib.clinic import adaptation
    from CephLandmarksLib.detection.predictor import LandmarkDetector
    from CephLandmarksLib.training.scoring import observe_samples, outcome

    monkeypatch.setattr(adaptation, "FLAG_P_LARGE_RANGE", (0.0, 1.0))
    det = LandmarkDetector(tiny_model)
    cases = observe_samples(det, load_dataset(_clinic(tmp_path, model=tiny_model, menton_offset_mm=2.0), "train"))
    s = adaptation.fit(det, cases, "none")
    assert s.flag_p_large_min == flag_threshold(outcome(det, cases, s).p_large)  # "none": nothing left out
    ad = adaptation.adapt(det, cases, ["none", "offsets"])
    cv = ad.outcomes[ad.method].p_large
    assert ad.settings.flag_p_large_min == flag_threshold(cv) and ad.settings.flag_image_weight == IMAGE_WEIGHT
    assert abs((image_adjusted_p_large(cv) >= ad.settings.flag_p_large_min).mean() - FLAG_SHARE) < 0.01
    assert flag_threshold(cv) != adaptation.fit(det, cases, ad.method).flag_p_large_min


def _edit_rows(clinic, edit):
    """Rewrite the clinic's landmarks.csv, each data row passed through edit(row) (in place)."""
    rows = list(csv.reader(open(clinic / "landmarks.csv")))
    for row in rows[1:]:
        edit(row)
    with open(clinic / "landmarks.csv", "w", newline="") as f:
        csv.writer(f).writerows(rows)


def _clinic(tmp_path, n=12, seed=3, model=None, menton_offset_mm=0.0):
    """A synthetic clinic of n images.  With a model: its annotations are that model's own points,
    with Menton moved `menton_offset_mm` along sella->nasion (a clinic convention the model lacks)."""
    root = tmp_path / "clinic"
    root.mkdir()
    make_generic_dataset(root, n_train=n, n_test=0, seed=seed)
    if model is None:
        return root
    from CephLandmarksLib.detection.predictor import LandmarkDetector
    from CephLandmarksLib.imaging.images import read_radiograph

    det = LandmarkDetector(model)

    def annotate(row):
        pts = det.detect(read_radiograph(root / row[0], 0.5), contours=False).points_px
        pts = np.where(np.isnan(pts), 1.0, pts)
        e1 = (pts[1] - pts[0]) / np.hypot(*(pts[1] - pts[0]))
        pts[7] += e1 * menton_offset_mm / 0.5
        row[1:39] = [f"{v:.4f}" for v in pts.ravel()]

    _edit_rows(root, annotate)
    return root


def _run(argv, capsys):
    code = cli.main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_adapt_learns_a_clinic_convention_and_writes_model_and_report(tiny_model, tmp_path, capsys):
    clinic = _clinic(tmp_path, model=tiny_model, menton_offset_mm=2.0)
    base_hash = file_sha256(tiny_model)
    out = tmp_path / "clinic.safetensors"
    code, stdout, err = _run(["adapt", "--model", tiny_model, "--dataset", clinic, "--out", out], capsys)
    assert code == 0, err
    assert stdout.strip() == str(out)
    assert file_sha256(tiny_model) == base_hash  # the base is never touched
    from CephLandmarksLib.store.registry import read_model_info

    meta = read_model_info(out)
    rec = meta["adaptation"]
    assert rec["base_sha256"] == base_hash and rec["n_images"] == 12
    assert sorted(rec["clinic_images"]) == [f"img{i:02d}" for i in range(12)]
    assert rec["method"] == "offsets"  # cross-validation sees the 2 mm convention
    offsets = np.array(meta["convention_offsets_mm"])
    assert offsets[7] == pytest.approx([2.0, 0.0], abs=0.05)
    assert np.abs(np.delete(offsets, 7, axis=0)).max() < 0.05
    assert rec["cv_after"]["mre_mm"] < rec["cv_before"]["mre_mm"]
    assert set(rec["cv_after"]) >= {"mre_mm", "coverage_90_percent", "large_errors_flagged_percent"}
    assert len(meta["region_masses"]["90"]) == 19 and all(0 < m <= 1 for m in meta["region_masses"]["90"])
    threshold = meta["flag_p_large_min"]
    assert FLAG_P_LARGE_RANGE[0] <= threshold <= FLAG_P_LARGE_RANGE[1]
    assert meta["ere_threshold_mm"] == read_model_info(tiny_model)["ere_threshold_mm"]
    assert f"{threshold:.3g}" in rec["flag_rule"] and f"{FLAG_SHARE:.0%}" in rec["flag_rule"]
    report = (tmp_path / "clinic.report" / "report.md").read_text()
    assert "cross-validated" in report and "| Me |" in report
    assert (tmp_path / "clinic.report" / "coverage90.png").stat().st_size > 1000
    # detect with the adapted model draws conformal regions and names the adaptation.
    code, _, err = _run(["detect", clinic / "img00.png", "--model", out, "--out-dir", tmp_path / "det",
                         "--no-overlay"], capsys)
    assert code == 0, err
    d = json.loads((tmp_path / "det" / "img00.json").read_text())
    assert d["regions"]["method"] == "split-conformal"
    assert meta["flag_image_weight"] == IMAGE_WEIGHT
    assert d["flag_rule"] == {"score": "p_large_error", "threshold": threshold, "image_weight": IMAGE_WEIGHT}
    assert d["model"]["adapted"]["base_sha256"] == base_hash
    lm = d["landmarks"][0]
    assert lm["region_90_area_mm2"] > 0 and lm["region_90_max_distance_mm"] > 0
    assert isinstance(lm["flag_reasons"], list) and bool(lm["flag_reasons"]) == lm["flagged"]


def test_adapt_does_not_depend_on_the_order_the_clinic_lists_its_images(tiny_model, tmp_path, capsys):
    """The folds and the fine-tune's batches follow the images' order; the same images listed in
    another order must give the same adapted model."""
    from CephLandmarksLib.store.registry import read_model_info

    clinic = _clinic(tmp_path, model=tiny_model, menton_offset_mm=1.0)
    metas = []
    for name in ("listed.safetensors", "reversed.safetensors"):
        out = tmp_path / name
        code, _, err = _run(["adapt", "--model", tiny_model, "--dataset", clinic, "--out", out], capsys)
        assert code == 0, err
        metas.append(read_model_info(out))
        rows = list(csv.reader(open(clinic / "landmarks.csv")))
        with open(clinic / "landmarks.csv", "w", newline="") as f:
            csv.writer(f).writerows([rows[0], *rows[:0:-1]])
    listed, reversed_ = metas
    for key in ("flag_p_large_min", "temperatures", "region_masses", "convention_offsets_mm"):
        assert listed[key] == reversed_[key], key
    for key in ("method", "methods_cv_mre_mm", "cv_before", "cv_after"):
        assert listed["adaptation"].get(key) == reversed_["adaptation"].get(key), key


def _refused(argv, capsys, out):
    code, _, err = _run(argv, capsys)
    assert code == 2
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert not out.exists()
    return err


def test_adapt_refuses_points_no_convention_explains(tiny_model, tmp_path, capsys):
    """A clinic CSV listing two landmarks in swapped order: the offsets would be tens of mm."""
    from conftest import TEMPLATE

    clinic = _clinic(tmp_path, model=tiny_model)
    size_mm = np.array([96, 120]) * 0.5
    d = np.linalg.norm((TEMPLATE[:, None] - TEMPLATE[None]) * size_mm, axis=-1)
    i, j = sorted(np.unravel_index(np.argmax(d[2:, 2:]), d[2:, 2:].shape) + np.array(2))  # not S or N
    assert d[i, j] > 25
    a, b = slice(1 + 2 * i, 3 + 2 * i), slice(1 + 2 * j, 3 + 2 * j)

    def swap(row):
        row[a], row[b] = row[b], row[a]

    _edit_rows(clinic, swap)
    out = tmp_path / "a.safetensors"
    err = _refused(["adapt", "--model", tiny_model, "--dataset", clinic, "--out", out], capsys, out)
    assert "mm from the model's" in err and "order" in err


def test_adapt_refuses_too_few_images(tiny_model, tmp_path, capsys):
    clinic = _clinic(tmp_path, n=9)
    out = tmp_path / "a.safetensors"
    err = _refused(["adapt", "--model", tiny_model, "--dataset", clinic, "--out", out], capsys, out)
    assert "at least 10" in err


def test_adapt_refuses_mixed_spacing(tiny_model, tmp_path, capsys):
    clinic = _clinic(tmp_path)
    column = next(csv.reader(open(clinic / "landmarks.csv"))).index("spacing_mm")
    _edit_rows(clinic, lambda row: row.__setitem__(column, "") if row[0] == "img02.png" else None)  # no spacing
    out = tmp_path / "a.safetensors"
    err = _refused(["adapt", "--model", tiny_model, "--dataset", clinic, "--out", out], capsys, out)
    assert "img02" in err and "spacing" in err


def test_adapt_never_overwrites_the_base(tiny_model, tmp_path, capsys):
    clinic = _clinic(tmp_path)
    copy = tmp_path / "base.safetensors"
    copy.write_bytes(tiny_model.read_bytes())
    before = file_sha256(copy)
    code, _, err = _run(["adapt", "--model", copy, "--dataset", clinic, "--out", copy], capsys)
    assert code == 2 and "never overwrites" in err and file_sha256(copy) == before


def test_adapt_refuses_a_damaged_base(tiny_model, tmp_path, capsys):
    clinic = _clinic(tmp_path)
    bad = tmp_path / "bad.safetensors"
    data = bytearray(tiny_model.read_bytes())
    data[-100] ^= 0xFF  # a weight byte
    bad.write_bytes(bytes(data))
    out = tmp_path / "a.safetensors"
    err = _refused(["adapt", "--model", bad, "--dataset", clinic, "--out", out], capsys, out)
    assert "bad.safetensors" in err


def test_calibrate_fits_conformal_regions_through_the_detect_path(tiny_model, generic_dataset, tmp_path, capsys):
    """The tiny model holds out 2 images: too few for a finite 90 % mass (the whole map), enough for 50 %."""
    from CephLandmarksLib.store.registry import read_info

    weights = tmp_path / "m.safetensors"
    weights.write_bytes(tiny_model.read_bytes())
    code, _, err = _run(["calibrate", "--model", weights, "--dataset", generic_dataset], capsys)
    assert code == 0, err
    model = tmp_path / "m.calibration.json"  # the calibration's sidecar, beside the untouched weights
    meta = read_info(model)
    assert meta["region_masses"]["90"] == [1.0] * 19
    assert len(meta["region_masses"]["50"]) == 19 and max(meta["region_masses"]["50"]) <= 1.0
    assert meta["calibration"]["regions"]["images"] == meta["training"]["holdout_ids"]
    code, _, err = _run(["detect", generic_dataset / "img09.png", "--model", model, "--out-dir", tmp_path / "d",
                         "--no-overlay"], capsys)
    d = json.loads((tmp_path / "d" / "img09.json").read_text())
    assert d["regions"]["method"] == "split-conformal" and d["regions"]["masses"]["90"] == [1.0] * 19


def test_adapt_with_the_second_stage_fits_on_the_combined_map_and_records_the_refiner(tiny_model, tmp_path, capsys):
    """adapt --refine FILE: the settings are fitted on the combined map, with a clinic factor on the refiner's
    temperatures; the record names the refiner, a copy lies beside the adapted model, and detect runs the
    adapted model with it by default."""
    from test_refine_detect import abbreviations, write_refiner

    from CephLandmarksLib.detection.predictor import LandmarkDetector, Settings
    from CephLandmarksLib.store.modelmeta import REFINER_TEMPERATURE_SCALE_RANGE
    from CephLandmarksLib.store.registry import default_refiner, read_model_info, refiner_beside

    clinic = _clinic(tmp_path, model=tiny_model, menton_offset_mm=2.0)
    refiner = write_refiner(tmp_path / "r.refiner.safetensors", abbreviations(tiny_model), min_inside_mass=0.0)
    out = tmp_path / "adapted" / "clinic.safetensors"
    out.parent.mkdir()
    code, _, err = _run(["adapt", "--model", tiny_model, "--dataset", clinic, "--out", out, "--refine", refiner],
                        capsys)
    assert code == 0, err
    meta = read_model_info(out)
    assert meta["adaptation"]["refiner_sha256"] == file_sha256(refiner)
    scale = meta["refiner_temperature_scale"]
    assert REFINER_TEMPERATURE_SCALE_RANGE[0] <= scale <= REFINER_TEMPERATURE_SCALE_RANGE[1] and scale != 1.0
    assert file_sha256(refiner_beside(out)) == file_sha256(refiner) and default_refiner(out) == refiner_beside(out)
    det = LandmarkDetector(out, refiner=refiner_beside(out))
    assert det.settings.fine_temperature_scale == scale == Settings.of(det.info).fine_temperature_scale
    assert det.settings.flag_p_large_min == meta["flag_p_large_min"]  # the adaptation's rule, not the refiner's
    code, _, err = _run(["detect", clinic / "img00.png", "--model", out, "--out-dir", tmp_path / "det",
                         "--no-overlay"], capsys)
    assert code == 0, err
    assert json.loads((tmp_path / "det" / "img00.json").read_text())["refiner"]["sha256"] == file_sha256(refiner)
