"""The region rule (uncertainty/regions.py): regions that mean "anywhere" are not drawn but marked,
fragments holding little mass are dropped and counted, clean regions are drawn as before; the same
rule in the overlay PNG and the report."""

import numpy as np
import pytest

from CephLandmarksLib.uncertainty.regions import (
    MIN_PART_SHARE,
    NOT_LOCALISED_AREA_MM2,
    LazyContours,
    credible_level,
    drawn_regions,
    localised,
    not_localised_text,
    region_caption,
)

MASSES = {"50": 0.5, "90": 0.9}
MM = (0.5, 0.5)  # mm per map pixel


def gaussian(shape=(240, 200), centre=(100.0, 120.0), sigma=3.0):
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    p = np.exp(-((xx - centre[0]) ** 2 + (yy - centre[1]) ** 2) / (2 * sigma**2))
    return p / p.sum()


def peak_and_floor(peak_share=0.6, seed=0):
    """A sharp peak holding `peak_share` of the mass on a noisy flat floor holding the rest: the
    "90 %" region must take most of the floor (hundreds of fragments over the whole map)."""
    floor = np.random.default_rng(seed).random((240, 200))
    return peak_share * gaussian(sigma=2.0) + (1 - peak_share) * floor / floor.sum()


def whole_map_lines(p, mass):
    import contourpy

    return contourpy.contour_generator(z=np.asarray(p, np.float64), line_type=contourpy.LineType.Separate).lines(
        credible_level(p, mass))


def test_a_clean_region_is_drawn_exactly_as_marching_squares_on_the_whole_map():
    p = gaussian()
    lines, dropped = drawn_regions(p, MASSES, MM)
    for level, mass in MASSES.items():
        (line,) = lines[level]
        (expected,) = whole_map_lines(p, mass)
        np.testing.assert_array_equal(line, expected)  # the crop changes nothing
        assert dropped[level] == 0.0


def test_a_region_that_means_anywhere_is_not_drawn_and_says_why():
    p = peak_and_floor()
    lines, dropped = drawn_regions(p, MASSES, MM)
    assert len(whole_map_lines(p, 0.9)) > 100  # what used to be drawn: a net of fragments
    area_90 = (p > credible_level(p, 0.9)).sum() * MM[0] * MM[1]
    assert area_90 > NOT_LOCALISED_AREA_MM2 and not localised(area_90)
    assert lines["90"] == [] and dropped["90"] == 0.0
    assert len(lines["50"]) == 1  # the peak holds the 50 % region: still drawn
    assert not_localised_text(17_900.0) == "90 % region not localised: 179 cm²"


def test_fragments_holding_little_mass_are_dropped_and_their_mass_reported():
    p = 0.97 * gaussian(sigma=2.0)
    specks = [(20, 30), (180, 200), (40, 220)]
    for x, y in specks:  # three isolated pixels, each 1 % of the mass, above the 90 % level
        p[y, x] += 0.01
    lines, dropped = drawn_regions(p, MASSES, MM)
    assert len(whole_map_lines(p, 0.9)) == 4  # the peak and the three specks
    (line,) = lines["90"]
    assert np.abs(line - [100, 120]).max() < 10  # the peak's contour only
    assert dropped["90"] == pytest.approx(0.03, abs=2e-3) and 0.01 < MIN_PART_SHARE
    assert dropped["50"] == 0.0


def test_lazy_contours_compute_once_on_first_read():
    calls = []

    def compute():
        calls.append(1)
        return {"50": ["a"], "90": []}, {"50": 0.0, "90": 0.1}

    c = LazyContours(compute)
    assert calls == []
    assert c.get("50") == ["a"] and set(c) == {"50", "90"} and c.dropped_mass["90"] == 0.1
    assert calls == [1]


def _detection_with(p_far, p_clean):
    """A synthetic detection whose landmark 1 has a peak-and-floor map and landmark 2 a clean one,
    their regions computed by the rule."""
    from slicer_fixtures import syntheticDetection

    d = syntheticDetection(spacing=(1.0, 1.0))  # 200 x 240 mm
    mm = d.frame.model_pixel_mm(d.spacing_mm)
    for lm, p in ((d.landmarks[0], p_far), (d.landmarks[1], p_clean)):
        z = np.asarray(p, np.float64)
        lm.region_90_area_mm2 = float((z > credible_level(z, 0.9)).sum() * mm[0] * mm[1])
        u, v = np.unravel_index(np.argmax(z), z.shape)[::-1]
        lm.x_px, lm.y_px = (float(c) for c in d.frame.model_to_image([[u, v]])[0])
        lm.contours_px = LazyContours(lambda z=z: drawn_regions(z, MASSES, mm, d.frame.model_to_image))
        d.probs[lm.index - 1] = p
    return d


def test_overlay_and_report_mark_the_region_not_localised(tmp_path):
    from CephLandmarksLib.outputs.plots import _overlay_caption, render_overlay
    from CephLandmarksLib.outputs.report import landmark_rows

    shape = (112, 96)  # the synthetic detection's model canvas
    floor = np.random.default_rng(0).random(shape)
    far = 0.5 * gaussian(shape, (40, 50), 1.5) + 0.5 * floor / floor.sum()
    d = _detection_with(far, gaussian(shape, (60, 70), 1.5))
    far_lm, clean_lm = d.landmarks[:2]
    assert not localised(far_lm.region_90_area_mm2) and localised(clean_lm.region_90_area_mm2)
    assert far_lm.contours_px["90"] == [] and len(clean_lm.contours_px["90"]) == 1
    caption = " ".join(t for t, _ in _overlay_caption(d, 6.0))
    assert "90 % regions not localised" in caption and far_lm.abbreviation in caption
    rows = landmark_rows(d)
    assert rows[0][-1].endswith("?") and not rows[1][-1].endswith("?")
    pixels = np.random.default_rng(1).random((240, 200)).astype(np.float32)
    render_overlay(pixels, d, tmp_path / "overlay.png")
    assert (tmp_path / "overlay.png").stat().st_size > 1000


def test_a_saved_detection_keeps_what_was_dropped(tmp_path):
    import json

    from CephLandmarksLib.detection.result import load_detection, save_heatmaps
    from CephLandmarksLib.uncertainty.regions import dropped_mass

    shape = (112, 96)
    p = 0.97 * gaussian(shape, (40, 50), 1.5)
    p[5, 5] += 0.012
    d = _detection_with(p, gaussian(shape, (60, 70), 1.5))
    (tmp_path / "x.json").write_text(json.dumps(d.to_json_dict()))
    save_heatmaps(tmp_path / "x.heatmaps.npz", d)
    back = load_detection(tmp_path / "x.json")
    assert dropped_mass(back.landmarks[0].contours_px)["90"] == pytest.approx(0.012, abs=1e-3)
    assert "B" not in region_caption(back.landmarks[1:2])  # the clean one says nothing
    assert f"{back.landmarks[0].abbreviation} 1 %" in region_caption(back.landmarks)
