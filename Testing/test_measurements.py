"""Measurements: hand-computed geometry, challenge class thresholds, heatmap sampling, report files."""

import numpy as np
import pytest

from CephLandmarksLib.cephalometry import measurements as M
from CephLandmarksLib.cephalometry.measurement_uncertainty import (
    measure_detection,
    measurements_json,
    sample_landmarks_mm,
    sample_pixels,
)
from CephLandmarksLib.detection.result import Detection, LandmarkResult
from CephLandmarksLib.imaging.geometry import ModelFrame
from CephLandmarksLib.landmarks import ISBI_LANDMARKS

SPACING = (0.1, 0.1)
IMAGE_SIZE = (1935, 2400)
MODEL_SIZE = (96, 120)
# A plausible hand-made lateral profile facing right, image pixels (0.1 mm).
PROFILE_PX = np.array([
    (800, 1000), (1400, 950), (1280, 1150), (600, 1130), (1370, 1500), (1330, 1850), (1320, 1980),
    (1270, 2050), (1300, 2030), (720, 1750), (1390, 1680), (1420, 1690), (1530, 1600), (1510, 1800),
    (1500, 1450), (1450, 2000), (850, 1420), (1450, 1420), (650, 1400),
], dtype=float)


def at_angle(vertex, towards, angle_deg, length=60.0):
    """A point `length` from `vertex`, rotated `angle_deg` clockwise on screen (y down) from `towards`."""
    d = (np.asarray(towards, float) - vertex) / np.linalg.norm(np.asarray(towards, float) - vertex)
    a = np.radians(angle_deg)
    rot = np.array([d[0] * np.cos(a) - d[1] * np.sin(a), d[0] * np.sin(a) + d[1] * np.cos(a)])
    return np.asarray(vertex, float) + length * rot


# ---- geometry -----------------------------------------------------------------------

def test_right_angle_and_orientation():
    assert M.angle_at_deg(np.array([10.0, 0]), np.zeros(2), np.array([0.0, 5])) == pytest.approx(90)
    # (0, 1) points down the screen: clockwise from (1, 0) when y points down
    assert M.signed_angle_deg(np.array([1.0, 0]), np.array([0.0, 1])) == pytest.approx(90)
    assert M.signed_angle_deg(np.array([1.0, 0]), np.array([0.0, -1])) == pytest.approx(-90)


def test_constructed_sna_snb_anb():
    p = PROFILE_PX * 0.1
    n, s = p[M.N], p[M.S]
    # SNA is measured from N->S towards the face: A is rotated counter-clockwise on screen (downwards, facing right)
    p[M.A] = at_angle(n, s, -82.0)
    p[M.B] = at_angle(n, s, -78.0, 90.0)
    assert M.BY_KEY["SNA"](p) == pytest.approx(82.0)
    assert M.BY_KEY["SNB"](p) == pytest.approx(78.0)
    assert M.BY_KEY["ANB"](p) == pytest.approx(4.0)
    assert M.BY_KEY["ANB"].classes[int(M.BY_KEY["ANB"].class_index([4.0])[0])][0] == "1"


def test_mirrored_profile_measures_the_same():
    p = PROFILE_PX * 0.1
    mirrored = p.copy()
    mirrored[:, 0] = 300.0 - mirrored[:, 0]
    for m in M.MEASUREMENTS:
        assert m(mirrored) == pytest.approx(m(p), abs=1e-9), m.key


def test_palatal_tilt_adds_to_odi_and_apdi():
    p = PROFILE_PX * 0.1
    p[M.PNS, 1] = p[M.ANS, 1] = 142.0  # palate parallel to ...
    p[M.PO, 1] = p[M.OR, 1] = 113.0  # ... a horizontal FH
    tilted = p.copy()
    tilted[M.ANS] = p[M.PNS] + 60.0 * np.array([np.cos(np.radians(5)), np.sin(np.radians(5))])  # ANS 5 deg lower
    for key in ("ODI", "APDI"):
        assert M.BY_KEY[key](tilted) - M.BY_KEY[key](p) == pytest.approx(5.0), key


def test_apdi_ab_plane_sign_class_ii_is_lower():
    p = PROFILE_PX * 0.1
    behind = p.copy()
    behind[M.B, 0] -= 5.0  # mandible set back: B behind A -> towards Class II (smaller APDI)
    assert M.BY_KEY["APDI"](behind) < M.BY_KEY["APDI"](p)


def test_fhi_mw_and_lip_line_by_hand():
    p = np.zeros((19, 2))
    p[M.S], p[M.N] = (0, 0), (70, 0)
    p[M.GO], p[M.ME] = (0, 70), (70, 100)  # S-Go 70, N-Me 100
    assert M.BY_KEY["FHI"](p) == pytest.approx(0.7)
    p[M.LIT], p[M.UIT] = (60, 80), (63, 84)  # 5 mm apart, upper in front
    assert M.BY_KEY["MW"](p) == pytest.approx(5.0)
    p[M.UIT] = (57, 84)  # upper behind the lower: cross bite
    assert M.BY_KEY["MW"](p) == pytest.approx(-5.0)
    p[M.SN], p[M.POG_S], p[M.UL], p[M.LL] = (80, 60), (80, 110), (83, 75), (78.5, 90)
    assert M.BY_KEY["UL-SnPog'"](p) == pytest.approx(3.0)
    assert M.BY_KEY["LL-SnPog'"](p) == pytest.approx(-1.5)


def test_gonial_and_fh_mp_are_acute_or_obtuse_as_expected():
    p = PROFILE_PX * 0.1
    assert 100 < M.BY_KEY["Gonial"](p) < 150
    assert 10 < M.BY_KEY["FH-MP"](p) < 45


@pytest.mark.parametrize("key, value, code", [
    ("ANB", 3.2, "1"), ("ANB", 3.19, "3"), ("ANB", 5.7, "1"), ("ANB", 5.71, "2"),
    ("SNB", 74.59, "2"), ("SNB", 78.71, "3"), ("SNA", 79.39, "3"), ("SNA", 83.21, "2"),
    ("ODI", 68.39, "3"), ("ODI", 80.51, "2"), ("APDI", 77.59, "2"), ("APDI", 85.21, "3"),
    ("FHI", 0.649, "3"), ("FHI", 0.751, "2"), ("FMA", 26.79, "3"), ("FMA", 31.41, "2"), ("FMA", 30.0, "1"),
    ("MW", 0.0, "2"), ("MW", 2.0, "1"), ("MW", 4.5, "1"), ("MW", 4.51, "4"), ("MW", 1.0, "3"), ("MW", -1.0, "3"),
])
def test_challenge_class_thresholds(key, value, code):
    m = M.BY_KEY[key]
    assert m.classes[int(m.class_index([value])[0])][0] == code


# ---- sampling from heatmaps ---------------------------------------------------------

def gaussian_map(uv, sigma, size=MODEL_SIZE):
    w, h = size
    yy, xx = np.mgrid[0:h, 0:w]
    g = np.exp(-((xx - uv[0]) ** 2 + (yy - uv[1]) ** 2) / (2 * sigma ** 2))
    return g / g.sum()


def delta_map(uv, size=MODEL_SIZE):
    w, h = size
    p = np.zeros((h, w))
    p[int(round(uv[1])), int(round(uv[0]))] = 1.0
    return p


def synthetic_detection(maps, frame, points_px, flagged=()):
    landmarks = [LandmarkResult(lm.index, lm.name, lm.abbreviation, float(x), float(y), float(x) * SPACING[0],
                                float(y) * SPACING[1], 0.5, 1.0, lm.index in flagged)
                 for lm, (x, y) in zip(ISBI_LANDMARKS, points_px, strict=True)]
    return Detection("synthetic.png", IMAGE_SIZE, SPACING, "assumed", {"name": "test", "version": "0", "sha256": "0"},
                     1.5, landmarks, np.asarray(maps), frame)


def detection_from_profile(sigma=None):
    frame = ModelFrame.fit(IMAGE_SIZE, MODEL_SIZE)
    uv = frame.image_to_model(PROFILE_PX)
    if sigma is None:  # one pixel each: points at the pixel centres
        maps = [delta_map(c) for c in uv]
        points = frame.model_to_image(np.round(uv))
    else:
        maps = [gaussian_map(c, sigma) for c in uv]
        points = PROFILE_PX
    return synthetic_detection(maps, frame, points)


def test_sample_pixels_follows_the_map():
    p = np.zeros((4, 5))
    p[1, 2], p[3, 4] = 0.25, 0.75
    uv = sample_pixels(p, 4000, np.random.default_rng(1), jitter=False)
    assert set(map(tuple, uv.astype(int))) == {(2, 1), (4, 3)}
    assert np.mean(uv[:, 0] == 4) == pytest.approx(0.75, abs=0.03)


def test_delta_heatmaps_give_zero_width_intervals_at_the_value():
    d = detection_from_profile(sigma=None)
    results = measure_detection(d, n=200, jitter=False)
    for r in results:
        assert r["p05"] == pytest.approx(r["p95"], abs=1e-9), r["key"]
        assert r["median"] == pytest.approx(r["value"], abs=1e-9), r["key"]
        if "classes" in r:
            assert r["class_probability"] == 1.0 and not r["uncertain"]
            assert r["class"] == r["class_at_value"]
    # with jitter the draws stay inside the pixel: samples within half a model pixel of the point
    s = sample_landmarks_mm(d, n=500)
    half_px_mm = 0.5 / d.frame.scale * np.asarray(SPACING)
    assert np.all(np.abs(s - d.points_px * SPACING) <= half_px_mm + 1e-9)


def test_broad_heatmaps_give_wider_intervals_and_probabilities_sum_to_one():
    narrow = {r["key"]: r for r in measure_detection(detection_from_profile(sigma=0.7), n=1000)}
    broad = {r["key"]: r for r in measure_detection(detection_from_profile(sigma=3.0), n=1000)}
    for key in narrow:
        assert broad[key]["p95"] - broad[key]["p05"] > 1.5 * (narrow[key]["p95"] - narrow[key]["p05"]), key
        assert broad[key]["p05"] <= broad[key]["median"] <= broad[key]["p95"]
        if "classes" in broad[key]:
            assert sum(c["probability"] for c in broad[key]["classes"]) == pytest.approx(1.0)
    assert any(r["uncertain"] for r in broad.values() if "classes" in r)


def test_intervals_cover_90_percent_of_configurations_drawn_from_the_same_heatmaps():
    from CephLandmarksLib.cephalometry.measurement_uncertainty import measure_points

    d = detection_from_profile(sigma=2.5)
    truths = sample_landmarks_mm(d, n=1000, seed=123)  # "true" configurations from the same distribution
    results = measure_points(d.points_px * SPACING, sample_landmarks_mm(d, n=4000, seed=0))
    for r in results:
        t = M.BY_KEY[r["key"]](truths)
        assert np.mean((t >= r["p05"]) & (t <= r["p95"])) == pytest.approx(0.9, abs=0.035), r["key"]


def test_sampling_is_repeatable_and_json_ready():
    import json

    d = detection_from_profile(sigma=2.0)
    a, b = measure_detection(d, n=300, seed=7), measure_detection(d, n=300, seed=7)
    assert a == b
    j = json.loads(json.dumps(measurements_json(a, n=300, seed=7)))
    assert j["method"]["samples"] == 300 and len(j["items"]) == len(M.MEASUREMENTS)
    assert {i["key"] for i in j["items"]} >= {"ANB", "SNB", "SNA", "ODI", "APDI", "FHI", "FMA", "MW"}


# ---- corrected points ---------------------------------------------------------------

def test_landmarks_used_follow_the_definitions():
    from CephLandmarksLib.cephalometry.measurement_uncertainty import landmarks_used

    names = lambda key: {ISBI_LANDMARKS[i].abbreviation for i in landmarks_used(M.BY_KEY[key])}  # noqa: E731
    assert names("ANB") == {"S", "N", "A", "B"}
    assert names("SNB") == {"S", "N", "B"}
    assert names("MW") == {"LIT", "UIT"}
    assert names("Gonial") == {"Ar", "Go", "Me"}
    assert names("ODI") == {"A", "B", "Go", "Me", "PNS", "ANS", "Po", "Or"}
    assert names("UL-SnPog'") == {"UL", "Sn", "Pog'"}


def profile_mm():
    return PROFILE_PX * np.asarray(SPACING)


def test_nothing_corrected_is_measure_detection():
    from CephLandmarksLib.cephalometry.measurement_uncertainty import measure_corrected

    d = detection_from_profile(sigma=2.0)
    expected = measure_detection(d, n=300, seed=3)
    got = measure_corrected(d, n=300, seed=3)
    assert [dict(r, corrected=None) for r in got] == [dict(r, corrected=None) for r in expected]
    assert all(r["corrected"] == [] for r in got)
    assert measure_corrected(d, profile_mm(), (), n=300, seed=3) == got


def test_corrected_landmarks_are_exact_and_only_their_measurements_change():
    from CephLandmarksLib.cephalometry.measurement_uncertainty import landmarks_used, measure_corrected

    d = detection_from_profile(sigma=2.0)
    before = {r["key"]: r for r in measure_corrected(d, n=500)}
    points = profile_mm()
    points[M.B] += (1.5, -0.8)
    after = {r["key"]: r for r in measure_corrected(d, points, [M.B], n=500)}
    for key, r in after.items():
        if M.B in landmarks_used(M.BY_KEY[key]):
            assert r["corrected"] == ["B"] and r["value"] != before[key]["value"], key
        else:
            assert r == before[key], key
    # every landmark of SNB corrected: no interval left; ANB still draws A
    points[M.S] += (0.5, 0.5)
    fixed = {r["key"]: r for r in measure_corrected(d, points, [M.S, M.N, M.B], n=500)}
    snb = fixed["SNB"]
    assert snb["corrected"] == ["S", "N", "B"] and snb["median"] == pytest.approx(snb["value"], abs=1e-9)
    assert snb["p05"] == pytest.approx(snb["p95"], abs=1e-9) and snb["class_probability"] == 1.0
    assert fixed["ANB"]["p95"] - fixed["ANB"]["p05"] > 0.05 and fixed["ANB"]["corrected"] == ["S", "N", "B"]
    # a deleted landmark (NaN) skips its measurements, corrected or not
    points[M.AR] = np.nan
    keys = {r["key"] for r in measure_corrected(d, points, [M.AR], n=200)}
    assert {"Gonial", "Saddle", "Articular", "Bjork"}.isdisjoint(keys) and "SNB" in keys


def test_corrected_measurements_json():
    import json

    from CephLandmarksLib.cephalometry.measurement_uncertainty import (
        corrected_measurements_json,
        detection_measurements_json,
    )

    d = detection_from_profile(sigma=2.0)
    points = profile_mm()
    points[M.B] += (1.5, -0.8)
    points[M.AR] = np.nan
    j = json.loads(json.dumps(corrected_measurements_json(d, points, [M.B], n=200)))
    assert j["corrected_landmarks"] == ["B"] and "corrected" in j["method"]
    assert set(j["skipped_missing_landmarks"]) == {"Gonial", "Saddle", "Articular", "Bjork"}
    items = {i["key"]: i for i in j["items"]}
    assert items["SNB"]["corrected"] == ["B"] and items["MW"]["corrected"] == []
    plain = detection_measurements_json(d, n=200)  # the CLI's section is unchanged
    assert "corrected_landmarks" not in plain and "corrected" not in plain["items"][0]


# ---- report -------------------------------------------------------------------------

def _image():
    yy, xx = np.mgrid[0:IMAGE_SIZE[1], 0:IMAGE_SIZE[0]]
    return (np.sin(xx / 90.0) * np.cos(yy / 70.0)).astype(np.float32)


def test_report_writes_pdf_and_png(tmp_path):
    from CephLandmarksLib.outputs.report import write_report

    d = detection_from_profile(sigma=2.0)
    d.landmarks[15].flagged = True
    results = measure_detection(d, n=200)
    paths = write_report(_image(), d, results, tmp_path, "case")
    pdf, png = tmp_path / "case_report.pdf", tmp_path / "case_report.png"
    assert set(paths) == {pdf, png}
    assert pdf.read_bytes()[:5] == b"%PDF-"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["case_report.pdf", "case_report.png"]


def test_report_marks_corrected_points():
    pytest.importorskip("matplotlib")
    from CephLandmarksLib.outputs.report import report_figure

    def texts(fig):
        return [t.get_text() for t in fig.texts] + [c.get_text().get_text() for ax in fig.axes for t in ax.tables
                                                    for c in t.get_celld().values()]

    d = detection_from_profile(sigma=2.0)
    results = measure_detection(d, n=100)
    plain = texts(report_figure(_image()[::4, ::4], d, results))
    assert not any("corrected" in t for t in plain) and "B  Supramentale (B point)" in plain
    from CephLandmarksLib.cephalometry.measurement_uncertainty import measure_corrected

    results = measure_corrected(d, corrected=[M.B], n=100)
    marked = texts(report_figure(_image()[::4, ::4], d, results, corrected=["B"]))
    assert "B*  Supramentale (B point)" in marked and "A  Subspinale (A point)" in marked
    assert any("corrected by the clinician (B)" in t for t in marked)
    assert "SNB angle *" in marked and "SNA angle" in marked
    d.extra["corrected_landmarks"] = ["B"]  # reviewedDetection's way of saying it
    assert "B*  Supramentale (B point)" in texts(report_figure(_image()[::4, ::4], d, results))


def test_report_needs_no_torch():
    import subprocess
    import sys
    from pathlib import Path

    code = ("import sys; import CephLandmarksLib.outputs.report, "
            "CephLandmarksLib.cephalometry.measurement_uncertainty; "
            "sys.exit(1 if 'torch' in sys.modules else 0)")
    assert subprocess.run([sys.executable, "-c", code], cwd=str(Path(__file__).resolve().parent.parent)).returncode == 0


def test_report_leaves_nothing_on_error(tmp_path, monkeypatch):
    from matplotlib.figure import Figure

    from CephLandmarksLib.outputs.report import write_report

    real = Figure.savefig

    def fail_on_pdf(self, fname, *args, **kw):
        if kw.get("format") == "pdf":
            raise OSError(28, "No space left on device")
        return real(self, fname, *args, **kw)

    monkeypatch.setattr(Figure, "savefig", fail_on_pdf)
    d = detection_from_profile(sigma=2.0)
    with pytest.raises(OSError):
        write_report(_image(), d, measure_detection(d, n=100), tmp_path, "case")
    assert list(tmp_path.iterdir()) == []


def test_cli_has_report_command():
    from CephLandmarksLib.cli import build_parser

    a = build_parser().parse_args(["report", "x.png", "--spacing", "0.1", "--out-dir", "o"])
    assert a.command == "report" and a.image == "x.png" and a.out_dir == "o" and a.spacing == 0.1


def test_detection_json_has_measurements():
    import json

    j = json.loads(json.dumps(detection_from_profile(sigma=2.0).to_json_dict()))
    assert [i["key"] for i in j["measurements"]["items"]] == [m.key for m in M.MEASUREMENTS]
    anb = j["measurements"]["items"][0]
    assert anb["p05"] <= anb["median"] <= anb["p95"] and anb["class"] in {"1", "2", "3"}


@pytest.mark.slow
def test_cli_report_end_to_end(tiny_model, generic_dataset, tmp_path, capsys):
    from CephLandmarksLib.cli import main

    out = tmp_path / "out"
    assert main(["report", str(generic_dataset / "img09.png"), "--model", str(tiny_model), "--out-dir", str(out)]) == 0
    assert (out / "img09_report.pdf").read_bytes()[:5] == b"%PDF-"
    assert (out / "img09_report.png").read_bytes()[:4] == b"\x89PNG"
    bad = tmp_path / "bad.png"
    bad.write_text("not an image")
    assert main(["report", str(bad), "--model", str(tiny_model), "--out-dir", str(tmp_path / "none")]) == 2
    assert "cannot read image" in capsys.readouterr().err
    assert not (tmp_path / "none").exists()
