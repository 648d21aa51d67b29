"""The named analyses wired into the outputs: the detect JSON's "analyses" section (following corrections
and naming flagged points), the tracing's geometry, the overlay's lines, the report's analysis pages
(a table and a chart per chosen analysis), the user's options and the DICOM patient tags. No model."""

import json

import numpy as np
import pytest
from test_measurements import PROFILE_PX, SPACING, _image, detection_from_profile

from CephLandmarksLib.cephalometry import measurements as M
from CephLandmarksLib.cephalometry.anatomy import INDEX
from CephLandmarksLib.cephalometry.detection_analyses import (
    AnalysisOptions,
    analyses_for_detection,
    analyses_sections,
    flag_note,
    parse_horizontal,
)
from CephLandmarksLib.cephalometry.measurement_uncertainty import measure_corrected
from CephLandmarksLib.cephalometry.tracing import tracing_lines
from CephLandmarksLib.errors import CephError
from CephLandmarksLib.imaging.patient_tags import age_years_from_dicom, sex_from_dicom

N = 300  # draws: enough for the checks, fast


def by_key(analyses, analysis, key):
    entry = next(a for a in analyses if a["key"] == analysis)
    return next(m for m in entry["measurements"] if m["key"] == key)


# ---- the JSON --------------------------------------------------------------------------

def test_the_detection_json_has_the_default_analyses_and_keeps_the_flat_measurements():
    j = json.loads(json.dumps(detection_from_profile(sigma=2.0).to_json_dict()))
    assert [a["key"] for a in j["analyses"]] == ["steiner", "downs", "bjork_jarabak", "mcnamara", "isbi2015"]
    assert [i["key"] for i in j["measurements"]["items"]] == [m.key for m in M.MEASUREMENTS]
    sna = by_key(j["analyses"], "steiner", "SNA")
    for field in ("key", "name", "unit", "value", "interval_90", "norm", "deviation_sd", "interpretation",
                  "p_outside_norm", "surrogates", "flag_note"):
        assert field in sna
    assert sna["interval_90"][0] <= sna["value"] <= sna["interval_90"][1]
    assert j["analyses_context"]["norms"].startswith("shipped") and j["analyses_context"]["age_years"] is None


def test_the_isbi_rows_agree_with_the_flat_measurements():
    d = detection_from_profile(sigma=2.0)
    flat = {r["key"]: r for r in measure_corrected(d, n=N)}
    isbi = {m["key"]: m for m in analyses_for_detection(d, n=N)[-1]["measurements"]}
    for key, item in isbi.items():
        assert item["value"] == pytest.approx(flat[key]["value"], abs=0.01)
        assert item["interval_90"] == pytest.approx([flat[key]["p05"], flat[key]["p95"]], abs=0.02)


def test_the_analyses_follow_corrections_and_a_corrected_point_clears_its_flag():
    d = detection_from_profile(sigma=2.0)
    d.landmarks[INDEX["Po"]].flagged = True
    before = analyses_for_detection(d, AnalysisOptions("downs,steiner"), n=N)
    facial = by_key(before, "downs", "facial-angle")
    assert facial["flagged_points"] == ["Po"] and "porion" in facial["flag_note"]
    assert "Frankfort horizontal rests on flagged porion" in facial["flag_note"]
    assert by_key(before, "steiner", "SNA")["flag_note"] is None

    points = PROFILE_PX * np.asarray(SPACING)
    points[INDEX["B"]] += (-3.0, 0.0)  # B moved 3 mm back: SNB falls
    after = analyses_for_detection(d, AnalysisOptions("downs,steiner"), points, corrected=[INDEX["B"], INDEX["Po"]],
                                   n=N)
    assert by_key(after, "downs", "facial-angle")["flag_note"] is None  # Po confirmed
    snb_before, snb_after = by_key(before, "steiner", "SNB"), by_key(after, "steiner", "SNB")
    assert snb_after["value"] < snb_before["value"] - 1.0
    assert by_key(after, "steiner", "SNA")["value"] == pytest.approx(by_key(before, "steiner", "SNA")["value"])
    sections = analyses_sections(d, AnalysisOptions("steiner"), points_mm=points, corrected=[INDEX["B"]], n=N)
    assert sections["analyses_context"]["corrected_landmarks"] == ["B"]


def test_flag_note_names_the_points():
    assert flag_note({"flagged_points": []}) is None
    note = flag_note({"flagged_points": ["Ar", "Go"], "reference": None})
    assert "Ar (articulare), Go (gonion)" in note and "porion" not in note


# ---- options ---------------------------------------------------------------------------

def test_options_are_checked_before_any_work(tmp_path):
    assert AnalysisOptions("all").check().keys()[-1] == "isbi2015"
    with pytest.raises(CephError, match="unknown analysis 'stiener'"):
        AnalysisOptions("steiner,stiener").check()
    with pytest.raises(CephError, match="unknown horizontal 'sideways'"):
        AnalysisOptions("downs", horizontal="sideways").check()
    with pytest.raises(CephError, match="steiner uses no horizontal"):
        AnalysisOptions("steiner", horizontal={"steiner": "FH"}).check()
    with pytest.raises(CephError, match="age"):
        AnalysisOptions(age_years=400).check()
    bad = tmp_path / "norms.json"
    bad.write_text("{not json")
    with pytest.raises(CephError, match="norms.json"):
        AnalysisOptions(norms_path=str(bad)).check()
    assert parse_horizontal("downs=constructed, mcnamara=FH") == {"downs": "constructed", "mcnamara": "FH"}
    assert parse_horizontal(None) == "FH"
    with pytest.raises(CephError):
        parse_horizontal("downs=up")


def test_dicom_age_and_sex_strings():
    assert age_years_from_dicom("014Y") == 14 and age_years_from_dicom("018M") == 1.5
    assert age_years_from_dicom("") is None and age_years_from_dicom("14 years") is None
    assert sex_from_dicom("F") == "female" and sex_from_dicom("M ") == "male" and sex_from_dicom("O") is None


# ---- the tracing -------------------------------------------------------------------------

def _cross(u, v):
    return u[0] * v[1] - u[1] * v[0]


def _lines(points, analyses):
    return {line.name: line for line in tracing_lines(points, SPACING, analyses)}


def test_planes_pass_through_their_points_and_perpendiculars_are_perpendicular():
    lines = _lines(PROFILE_PX, [("steiner", "FH"), ("mcnamara", "FH")])
    s, n = PROFILE_PX[INDEX["S"]], PROFILE_PX[INDEX["N"]]
    sn = lines["SN"]
    for p in (s, n):
        assert abs(_cross(np.subtract(sn.end_px, sn.start_px), p - np.asarray(sn.start_px))) < 1e-6
    assert set(lines["SN"].analyses) == {"steiner"}
    fh = np.subtract(lines["horizontal"].end_px, lines["horizontal"].start_px)
    perp = np.subtract(lines["N-perp"].end_px, lines["N-perp"].start_px)
    assert abs(np.dot(fh, perp)) / (np.linalg.norm(fh) * np.linalg.norm(perp)) < 1e-9
    assert lines["N-perp"].end_px[1] > PROFILE_PX[INDEX["Me"]][1]  # reaches below menton


def test_the_constructed_horizontal_is_s_n_turned_7_degrees_down_and_mirrors():
    lines = _lines(PROFILE_PX, [("downs", "constructed")])
    hp = np.subtract(lines["horizontal:constructed"].end_px, lines["horizontal:constructed"].start_px)
    sn = PROFILE_PX[INDEX["N"]] - PROFILE_PX[INDEX["S"]]
    turn = np.degrees(np.arctan2(_cross(sn, hp), np.dot(sn, hp)))
    assert turn == pytest.approx(7.0)  # clockwise on screen (y down): the anterior end goes down
    mirrored = PROFILE_PX * [-1, 1] + [2000, 0]
    m = _lines(mirrored, [("downs", "constructed")])["horizontal:constructed"]
    expected = np.asarray(lines["horizontal:constructed"].end_px) * [-1, 1] + [2000, 0]
    assert np.asarray(m.end_px) == pytest.approx(expected)


def test_a_line_through_a_missing_or_coincident_point_is_left_out():
    points = PROFILE_PX.copy()
    points[INDEX["Po"]] = np.nan
    points[INDEX["A"]] = points[INDEX["N"]]
    names = set(_lines(points, [("downs", "FH"), ("steiner", "FH")]))
    assert "horizontal" not in names and "NA" not in names and {"SN", "NB", "facial"} <= names


# ---- the pictures ------------------------------------------------------------------------

def _texts(fig):
    out = [t.get_text() for t in fig.texts]
    for ax in fig.axes:
        out += [ax.get_title()] + [t.get_text() for t in ax.get_yticklabels()]
        out += [c.get_text().get_text() for t in ax.tables for c in t.get_celld().values()]
    return out


@pytest.mark.slow
def test_the_overlay_draws_the_chosen_analyses_lines():
    from CephLandmarksLib.outputs.plots import overlay_figure

    d = detection_from_profile(sigma=2.0)
    d.extra.update(analyses_sections(d, AnalysisOptions("holdaway"), n=N))
    fig = overlay_figure(_image()[::4, ::4], d)  # a small picture (shown 1:1): the lines in image pixels
    drawn = [np.asarray(line.get_xydata()) for line in fig.axes[0].get_lines() if len(line.get_xydata()) == 2]
    ul, pog = PROFILE_PX[INDEX["UL"]], PROFILE_PX[INDEX["Pog'"]]  # the H-line
    assert any(abs(_cross(seg[1] - seg[0], ul - seg[0])) < 1 and abs(_cross(seg[1] - seg[0], pog - seg[0])) < 1
               for seg in drawn)
    assert any("Holdaway" in t for t in _texts(fig))


@pytest.mark.slow
def test_each_chosen_analysis_has_its_page_with_a_table_and_a_chart():
    from CephLandmarksLib.outputs.analysis_pages import analysis_figures

    d = detection_from_profile(sigma=2.0)
    d.extra.update(analyses_sections(d, AnalysisOptions("steiner,bjork_jarabak,isbi2015"), n=N))
    pages = analysis_figures(_image()[::8, ::8], d)
    assert len(pages) == 3
    for page, entry in zip(pages, d.extra["analyses"], strict=True):
        texts = _texts(page)
        assert f"{entry['name']} analysis" in texts
        tables = [t for ax in page.axes for t in ax.tables]
        assert len(tables) == 1 and len(tables[0].get_celld()) == 8 * (len(entry["measurements"]) + 1)
        chart = next(ax for ax in page.axes if ax.get_title().startswith("Deviation"))
        assert len(chart.get_yticklabels()) == len(entry["measurements"])
        assert any(t.startswith("Tracing: ") for t in texts)
        challenge_words = any("Class III (<" in t or "Class II (>" in t for t in texts)
        assert challenge_words == (entry["key"] == "isbi2015")  # the challenge's bands only on its own page


@pytest.mark.slow
def test_the_report_pdf_holds_the_overview_and_a_page_per_analysis(tmp_path):
    from CephLandmarksLib.cephalometry.measurement_uncertainty import measure_detection
    from CephLandmarksLib.outputs.report import write_report

    d = detection_from_profile(sigma=2.0)
    d.extra.update(analyses_sections(d, AnalysisOptions("steiner,holdaway"), n=N))
    paths = write_report(_image()[::4, ::4], d, measure_detection(d, n=100), tmp_path, "case")
    pdf = next(p for p in paths if p.suffix == ".pdf").read_bytes()
    assert pdf.count(b"/Type /Page") - pdf.count(b"/Type /Pages") == 3
    png = next(p for p in paths if p.suffix == ".png")
    import matplotlib.image as mpimg

    h, w = mpimg.imread(png).shape[:2]
    assert h == pytest.approx(3 * w * 11.69 / 8.27, rel=0.01)  # the three pages stacked


CHALLENGE_LABELS = [label for m in M.MEASUREMENTS for _, label in m.classes or ()]  # "Class III (< 3.2)", ...
CHALLENGE_LABEL = "ISBI 2015 challenge classes (benchmark, not clinical norms)"


def _challenge_words(texts):
    return [t for t in texts if any(label in t for label in CHALLENGE_LABELS)]


def _summary_rows(fig):
    """The overview's analyses table as rows of strings (the table whose first header is "Analysis")."""
    for ax in fig.axes:
        for table in ax.tables:
            cells = table.get_celld()
            if cells[0, 0].get_text().get_text() == "Analysis":
                n_rows, n_cols = max(r for r, _ in cells) + 1, max(c for _, c in cells) + 1
                return [[cells[r, c].get_text().get_text() for c in range(n_cols)] for r in range(1, n_rows)]
    return None


def test_the_report_overview_leads_with_the_analyses_and_the_challenge_classes_stay_on_their_page():
    from CephLandmarksLib.cephalometry.measurement_uncertainty import measure_detection
    from CephLandmarksLib.outputs.report import report_pages

    d = detection_from_profile(sigma=2.0)
    d.extra.update(analyses_sections(d, AnalysisOptions(), n=N))
    pages = report_pages(_image()[::8, ::8], d, measure_detection(d, n=N))
    keys = [a["key"] for a in d.extra["analyses"]]
    assert len(pages) == 1 + len(keys) and keys[-1] == "isbi2015"
    for page, key in zip(pages, ["overview", *keys], strict=True):
        assert bool(_challenge_words(_texts(page))) == (key == "isbi2015"), key  # the bands on the ISBI page only
    isbi, steiner = _texts(pages[-1]), _texts(pages[1])
    assert CHALLENGE_LABEL in isbi and "challenge class" in isbi  # labelled in its heading and its table's header
    assert CHALLENGE_LABEL not in steiner and "interpretation" in steiner
    overview = _texts(pages[0])
    assert not any("class" in t.lower() and CHALLENGE_LABEL not in t for t in overview)
    assert any(CHALLENGE_LABEL in t and f"p. {len(pages)}" in t for t in overview)  # where the classes are
    # The example: this ANB is "Class III (< 3.2)" by the challenge's bands, within Steiner's 0 to 4 deg.
    anb = by_key(d.extra["analyses"], "steiner", "ANB")
    assert 0 < anb["value"] < 3.2 and by_key(d.extra["analyses"], "isbi2015", "ANB")["interpretation"].startswith(
        "Class III")
    rows = _summary_rows(pages[0])
    row = next(r for r in rows if r[1].startswith("ANB angle"))
    assert row[4] == "0 to 4°" and row[6] == "within the norm" and row[7].endswith("%")
    assert rows[0][0] == "Steiner" and rows[1][0].startswith("p. 2")  # each analysis points to its page
    assert {r[0] for r in rows} >= {"Downs", "McNamara"} and not any("ISBI" in r[0] for r in rows)


def test_the_report_overview_marks_corrected_rows_and_without_analyses_shows_no_classes():
    from CephLandmarksLib.cephalometry.measurement_uncertainty import measure_corrected
    from CephLandmarksLib.outputs.report import SUMMARY_ROWS, report_figure

    d = detection_from_profile(sigma=2.0)
    results = measure_corrected(d, corrected=[INDEX["B"]], n=N)
    d.extra.update(analyses_sections(d, AnalysisOptions("steiner"), n=N))
    rows = _summary_rows(report_figure(_image()[::8, ::8], d, results, corrected=["B"]))
    marked = {r[1] for r in rows if r[1].endswith(" *")}
    assert marked == {"SNB angle (°) *", "ANB angle (°) *", "Lower incisor to N-B (mm) *"}  # the key rows on B
    assert len(rows) == len(SUMMARY_ROWS["steiner"]) and rows[1][0] == "p. 2 (+1 row)"  # Pog-NB: on its page
    d.extra.pop("analyses")  # a detection without the named analyses: the flat values, no norms, no classes
    flat = report_figure(_image()[::8, ::8], d, results)
    assert _summary_rows(flat) is None and not _challenge_words(_texts(flat))
    assert "SNB angle *" in _texts(flat) and not any("Class" in t for t in _texts(flat))


def test_dicom_patient_tags_are_read_and_the_user_wins(tmp_path):
    import SimpleITK as sitk

    from CephLandmarksLib.cephalometry.detection_analyses import with_patient
    from CephLandmarksLib.imaging.patient_tags import dicom_patient

    image = sitk.GetImageFromArray(np.zeros((8, 8), dtype=np.uint8))
    image.SetMetaData("0010|1010", "014Y")
    image.SetMetaData("0010|0040", "F")
    path = tmp_path / "ceph.dcm"
    sitk.WriteImage(image, str(path))
    assert dicom_patient(path) == (14.0, "female")
    options = with_patient(AnalysisOptions(), path)
    assert (options.age_years, options.age_source, options.sex, options.sex_source) == \
        (14.0, "dicom:PatientAge", "female", "dicom:PatientSex")
    mine = with_patient(AnalysisOptions(age_years=9.0, age_source="user"), path)
    assert (mine.age_years, mine.age_source, mine.sex) == (9.0, "user", "female")
    png = tmp_path / "x.png"
    png.write_bytes(b"\x89PNG\r\n\x1a\n")
    assert dicom_patient(png) == (None, None)
