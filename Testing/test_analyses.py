"""Named analyses: the shipped catalogue, every measurement on a head with known answers, the anatomical
sign rule under mirroring and rotation, the identities, the ISBI eight unchanged, undefined lines,
norms files, age-corrected norms and P(outside the norm). No model, no data."""

import json
import shutil
import subprocess
import sys
import warnings
import zipfile
from pathlib import Path

import numpy as np
import pytest

from CephLandmarksLib.cephalometry import grading
from CephLandmarksLib.cephalometry import measurements as M
from CephLandmarksLib.cephalometry.analyses import rounded, run_analyses
from CephLandmarksLib.cephalometry.anatomy import INDEX
from CephLandmarksLib.cephalometry.catalogue import CATALOGUE_PATH, load_catalogue, with_norms_file
from CephLandmarksLib.cephalometry.catalogue_listing import BEGIN, END, catalogue_markdown, norm_text
from CephLandmarksLib.cephalometry.definitions import check
from CephLandmarksLib.errors import CephError

# A synthetic head in anatomical coordinates (mm): x anterior, y superior. S-N, FH and the
# palatal plane are all horizontal, so every expected value below is plain geometry.
HEAD = {
    "S": (0, 0), "N": (70, 0), "Or": (55, -25), "Po": (-15, -25), "A": (72, -50), "B": (66, -90),
    "Pog": (68, -110), "Me": (60, -118), "Gn": (66, -116), "Go": (-5, -90), "LIT": (74, -72),
    "UIT": (77, -70), "UL": (90, -65), "LL": (87, -82), "Sn": (85, -45), "Pog'": (80, -115),
    "PNS": (10, -48), "ANS": (80, -48), "Ar": (-10, -30),
}
ANATOMICAL = np.array([HEAD[k] for k in sorted(INDEX, key=INDEX.get)], dtype=float)


def P(name):
    return np.array(HEAD[name], dtype=float)


def angle3(a, v, b):
    """Angle a-v-b in degrees, by the arccos of the dot product (independent of the library's atan2)."""
    u, w = P(a) - P(v), P(b) - P(v)
    return np.degrees(np.arccos(u @ w / np.linalg.norm(u) / np.linalg.norm(w)))


def dir_angle(u, w):
    u, w = np.asarray(u, float), np.asarray(w, float)
    return np.degrees(np.arccos(u @ w / np.linalg.norm(u) / np.linalg.norm(w)))


def ahead(p, a, b):
    """Signed distance of p from the downward line a-b, positive when p lies anterior (+x)."""
    d, r = P(b) - P(a), P(p) - P(a)
    return (d[0] * r[1] - d[1] * r[0]) / np.linalg.norm(d)


def dist(a, b):
    return float(np.linalg.norm(P(a) - P(b)))


FH = (1.0, 0.0)  # Po->Or in HEAD
FACIAL = dir_angle((-1, 0), P("Pog") - P("N"))
MP = dir_angle(FH, P("Me") - P("Go"))
GONIAL = angle3("Ar", "Go", "Me")
EXPECTED = {
    ("steiner", "SNA"): angle3("S", "N", "A"),
    ("steiner", "SNB"): angle3("S", "N", "B"),
    ("steiner", "ANB"): angle3("S", "N", "A") - angle3("S", "N", "B"),
    ("steiner", "GoGn-SN"): dir_angle(P("N") - P("S"), P("Gn") - P("Go")),
    ("steiner", "Pog-NB"): ahead("Pog", "N", "B"),
    ("steiner", "U1-NA"): ahead("UIT", "N", "A"),
    ("steiner", "L1-NB"): ahead("LIT", "N", "B"),
    ("downs", "facial-angle"): FACIAL,
    ("downs", "convexity"): 180 - angle3("N", "A", "Pog"),  # A lies in front of N-Pog: positive
    ("downs", "AB-plane"): -dir_angle(P("Pog") - P("N"), P("B") - P("A")),  # B behind A: negative
    ("downs", "MP-angle"): MP,
    ("downs", "Y-axis"): dir_angle(FH, P("Gn") - P("S")),
    ("downs", "U1-APog"): ahead("UIT", "A", "Pog"),
    ("bjork_jarabak", "saddle"): angle3("N", "S", "Ar"),
    ("bjork_jarabak", "articular"): angle3("S", "Ar", "Go"),
    ("bjork_jarabak", "gonial"): GONIAL,
    ("bjork_jarabak", "upper-gonial"): angle3("Ar", "Go", "N"),
    ("bjork_jarabak", "lower-gonial"): angle3("N", "Go", "Me"),
    ("bjork_jarabak", "bjork-sum"): angle3("N", "S", "Ar") + angle3("S", "Ar", "Go") + GONIAL,
    ("bjork_jarabak", "S-N"): 70.0,
    ("bjork_jarabak", "S-Ar"): dist("S", "Ar"),
    ("bjork_jarabak", "Ar-Go"): dist("Ar", "Go"),
    ("bjork_jarabak", "Go-Me"): dist("Go", "Me"),
    ("bjork_jarabak", "jarabak-ratio"): 100 * dist("S", "Go") / dist("N", "Me"),
    ("bjork_jarabak", "lower-face-share"): 100 * dist("ANS", "Me") / (dist("N", "ANS") + dist("ANS", "Me")),
    ("mcnamara", "A-Nperp"): 2.0,
    ("mcnamara", "Pog-Nperp"): -2.0,
    ("mcnamara", "LAFH"): dist("ANS", "Me"),
    ("mcnamara", "MP-angle"): MP,
    ("mcnamara", "L1-APog"): ahead("LIT", "A", "Pog"),
    ("mcnamara", "U1-Avert"): 5.0,
    ("mcnamara", "Ar-A"): dist("Ar", "A"),
    ("mcnamara", "Ar-Gn"): dist("Ar", "Gn"),
    ("mcnamara", "Ar-differential"): dist("Ar", "Gn") - dist("Ar", "A"),
    ("tweed", "FMA"): MP,
    ("ricketts", "facial-depth"): FACIAL,
    ("ricketts", "MP-angle"): MP,
    ("ricketts", "convexity"): ahead("A", "N", "Pog"),
    ("ricketts", "L1-APog"): ahead("LIT", "A", "Pog"),
    ("holdaway", "Sn-H"): ahead("Sn", "UL", "Pog'"),
    ("holdaway", "LL-H"): ahead("LL", "UL", "Pog'"),
    ("holdaway", "chin-thickness"): dist("Pog", "Pog'"),
    ("legan_burstone", "UL-SnPog'"): ahead("UL", "Sn", "Pog'"),
    ("legan_burstone", "LL-SnPog'"): ahead("LL", "Sn", "Pog'"),
    ("sagittal_jaw", "App-Bpp"): 6.0,
    ("sagittal_jaw", "AF-BF"): 6.0,
}


def to_image(points, degrees=0.0, mirror=False, offset=(900.0, 1100.0)):
    """Anatomical coordinates -> image mm (y down), rotated on screen, optionally facing left."""
    p = np.asarray(points, float) * np.array([1.0, -1.0])
    t = np.radians(degrees)
    p = p @ np.array([[np.cos(t), np.sin(t)], [-np.sin(t), np.cos(t)]])
    if mirror:
        p = p * np.array([-1.0, 1.0])
    return p + np.asarray(offset)


def values(results) -> dict:
    return {(a["key"], m["key"]): m["value"] for a in results for m in a["measurements"]}


def items(results) -> dict:
    return {(a["key"], m["key"]): m for a in results for m in a["measurements"]}


def test_the_shipped_catalogue_validates_and_holds_the_minimum_set():
    catalogue = load_catalogue()
    keys = [a.key for a in catalogue.analyses]
    assert {"steiner", "downs", "bjork_jarabak", "mcnamara", "isbi2015"} <= set(catalogue.default_analyses)
    assert set(keys) >= {"steiner", "downs", "bjork_jarabak", "mcnamara", "tweed", "ricketts", "holdaway",
                         "legan_burstone", "sagittal_jaw", "isbi2015"}
    for analysis in catalogue.analyses:
        for m in analysis.measurements:
            assert check(m.definition) is None
            assert m.norms or m.norm_missing, f"{analysis.key}.{m.key} has neither a norm nor a reason"
            for norm in m.norms:
                assert norm.source and norm.population
                if norm.sd is not None:
                    assert norm.sd_from in ("source", "convention")
    assert catalogue.analysis("isbi2015").norm_label == "ISBI 2015 challenge classes (benchmark, not clinical norms)"
    assert catalogue.analysis("Björk–Jarabak").key == "bjork_jarabak"


def test_every_measurement_has_a_known_answer_on_the_synthetic_head():
    results = run_analyses(to_image(ANATOMICAL), analyses="all")
    got = {k: v for k, v in values(results).items() if k[0] != "isbi2015"}
    assert set(got) == set(EXPECTED), "a measurement was added without a known answer here"
    for key, expected in EXPECTED.items():
        assert got[key] == pytest.approx(expected, abs=1e-9), key


def test_round_numbers():
    v = values(run_analyses(to_image(ANATOMICAL), analyses="all"))
    assert v["steiner", "SNA"] == pytest.approx(180 - np.degrees(np.arctan2(50, 2)))
    assert v["downs", "facial-angle"] == pytest.approx(90 - np.degrees(np.arctan2(2, 110)))  # Pog 2 mm behind N
    assert v["bjork_jarabak", "S-N"] == pytest.approx(70)
    assert v["mcnamara", "U1-Avert"] == pytest.approx(5)


@pytest.mark.parametrize("degrees,mirror", [(0, True), (15, False), (-15, False), (15, True), (-15, True)])
def test_left_facing_and_rotated_heads_give_the_same_values(degrees, mirror):
    reference = values(run_analyses(to_image(ANATOMICAL), analyses="all"))
    moved = values(run_analyses(to_image(ANATOMICAL, degrees, mirror), analyses="all"))
    for key, value in reference.items():
        if key[0] == "isbi2015":
            continue  # the challenge's own conventions (MW's image-x sign); compared with measurements.py below
        assert moved[key] == pytest.approx(value, abs=1e-9), key


def test_identities_hold_on_many_heads():
    rng = np.random.default_rng(3)
    image = to_image(ANATOMICAL)
    for sample in image[None] + rng.normal(0, 3, (20, 19, 2)):
        v = values(run_analyses(sample, analyses=["steiner", "bjork_jarabak"]))
        s, n, go, me = (sample[INDEX[k]] for k in ("S", "N", "Go", "Me"))
        sn_gome = dir_angle(n - s, me - go)
        assert v["bjork_jarabak", "bjork-sum"] == pytest.approx(360 + sn_gome, abs=1e-6)
        assert v["bjork_jarabak", "upper-gonial"] + v["bjork_jarabak", "lower-gonial"] == pytest.approx(
            v["bjork_jarabak", "gonial"], abs=1e-6)
        assert v["steiner", "ANB"] == pytest.approx(v["steiner", "SNA"] - v["steiner", "SNB"], abs=1e-9)


PROFILE_MM = 0.1 * np.array([
    (800, 1000), (1400, 950), (1280, 1150), (600, 1130), (1370, 1500), (1330, 1850), (1320, 1980),
    (1270, 2050), (1300, 2030), (720, 1750), (1390, 1680), (1420, 1690), (1530, 1600), (1510, 1800),
    (1500, 1450), (1450, 2000), (850, 1420), (1450, 1420), (650, 1400),
])


@pytest.mark.parametrize("points", [PROFILE_MM, to_image(ANATOMICAL), to_image(ANATOMICAL, 15, True)])
def test_the_isbi_eight_keep_todays_values_and_classes(points):
    results = run_analyses(points, analyses=["isbi2015"])
    assert results[0]["norm_label"] == "ISBI 2015 challenge classes (benchmark, not clinical norms)"
    got = items(results)
    assert [k for _, k in got] == [m.key for m in M.ISBI_MEASUREMENTS]
    for m in M.ISBI_MEASUREMENTS:
        item = got["isbi2015", m.key]
        assert item["value"] == pytest.approx(float(m(points)), abs=1e-12)
        assert item["challenge_class"] == m.classes[int(m.class_index(np.array([m(points)]))[0])][1]


def test_isbi_bands_in_the_data_file_match_measurements_py():
    isbi = load_catalogue().analysis("isbi2015")
    for spec in isbi.measurements:
        m = M.BY_KEY[spec.key]
        low, high = spec.norms[0].low, spec.norms[0].high
        normal = m.class_index(np.array([low, high, (low + high) / 2]))
        below, above = m.class_index(np.array([low - 1e-6, high + 1e-6]))
        assert len(set(normal)) == 1 and below != normal[0] and above != normal[0], spec.key


def test_a_degenerate_line_is_undefined_without_a_warning():
    image = to_image(ANATOMICAL, 10)
    image[INDEX["Or"]] = image[INDEX["Po"]]  # FH has no direction
    samples = image[None] + np.zeros((5, 19, 2))
    samples[:2, INDEX["B"]] = samples[:2, INDEX["N"]]  # two draws put B on N
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        got = items(run_analyses(image, samples, analyses="all"))
    facial = got["downs", "facial-angle"]
    assert facial["value"] is None and "Po and Or coincide" in facial["undefined"]
    assert facial["interval_90"] is None and facial["p_outside_norm"] is None
    assert got["steiner", "SNA"]["value"] is not None  # does not rest on FH
    assert got["steiner", "SNB"]["samples_used"] == 3

    image = to_image(ANATOMICAL)
    image[INDEX["N"]] = image[INDEX["S"]]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        got = items(run_analyses(image, analyses="all"))
    assert "S and N coincide" in got["steiner", "Pog-NB"]["undefined"]
    assert got["steiner", "SNA"]["value"] is None and "coincide" in got["steiner", "SNA"]["undefined"]
    assert got["bjork_jarabak", "Go-Me"]["value"] == pytest.approx(dist("Go", "Me"))


def test_a_missing_landmark_is_named():
    image = to_image(ANATOMICAL)
    image[INDEX["Po"]] = np.nan
    got = items(run_analyses(image, analyses=["downs", "steiner"]))
    assert got["downs", "Y-axis"]["undefined"] == "missing landmark(s): Po"
    assert got["downs", "U1-APog"]["value"] is not None
    assert got["steiner", "SNA"]["value"] is not None


def test_a_missing_jaw_point_does_not_turn_the_frame_over():
    right, left = to_image(ANATOMICAL), to_image(ANATOMICAL, 15, mirror=True)
    right[INDEX["Me"]] = left[INDEX["Me"]] = np.nan
    a, b = (values(run_analyses(x, analyses="all")) for x in (right, left))
    assert a["downs", "convexity"] == pytest.approx(EXPECTED["downs", "convexity"])
    for key in EXPECTED:
        assert (a[key] is None and b[key] is None) or a[key] == pytest.approx(b[key]), key


def test_a_missing_sella_makes_signed_rows_undefined_and_says_so():
    image = to_image(ANATOMICAL)
    image[INDEX["S"]] = np.nan
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        got = items(run_analyses(image, analyses=["steiner", "bjork_jarabak"]))
    assert "S or N is missing" in got["steiner", "Pog-NB"]["undefined"]
    assert got["steiner", "SNA"]["undefined"] == "missing landmark(s): S"
    assert got["bjork_jarabak", "Go-Me"]["value"] == pytest.approx(dist("Go", "Me"))


def test_the_constructed_horizontal_is_an_option_and_is_recorded():
    image = to_image(ANATOMICAL, -12)
    fh = items(run_analyses(image, analyses=["downs"]))
    hp = items(run_analyses(image, analyses=["downs"], horizontal_option={"downs": "constructed"}))
    t = np.radians(7)
    assert hp["downs", "facial-angle"]["value"] == pytest.approx(
        dir_angle((-np.cos(t), np.sin(t)), P("Pog") - P("N")))
    assert fh["downs", "facial-angle"]["reference"].startswith("Frankfort")
    assert hp["downs", "facial-angle"]["reference"].startswith("constructed")
    assert hp["downs", "facial-angle"]["rests_on"] == ["N", "Pog", "S"]
    assert "Po" in fh["downs", "Y-axis"]["rests_on"] and hp["downs", "convexity"]["reference"] is None
    with pytest.raises(CephError, match="steiner uses no horizontal"):
        run_analyses(image, analyses=["steiner"], horizontal_option={"steiner": "constructed"})
    with pytest.raises(CephError, match="unknown analyses: dwns"):
        run_analyses(image, horizontal_option={"dwns": "constructed"})
    with pytest.raises(CephError, match="unknown horizontal"):
        run_analyses(image, horizontal_option="true vertical")


def test_flagged_points_are_named_on_the_rows_that_rest_on_them():
    got = items(run_analyses(to_image(ANATOMICAL), analyses=["downs", "steiner"], flagged=("Po",)))
    assert got["downs", "Y-axis"]["flagged_points"] == ["Po"]
    assert got["steiner", "SNA"]["flagged_points"] == []


def test_p_outside_norm_on_samples_with_a_known_distribution():
    rng = np.random.default_rng(0)
    normal = rng.normal(0.0, 1.0, 200_000)
    assert grading.p_outside(normal, (-1.0, 1.0)) == pytest.approx(0.3173, abs=0.005)
    assert grading.p_outside(rng.uniform(0, 10, 200_000), (2.0, 4.5)) == pytest.approx(0.75, abs=0.005)
    # End to end: SNA drawn from N(82, 2) around N, against Steiner's 82 +- 2 (convention).
    sna = rng.normal(82.0, 2.0, 20_000)
    image = np.tile(to_image(ANATOMICAL), (len(sna), 1, 1))
    direction = np.radians(180.0 + sna)  # from N->S (pointing back), turned down by SNA
    a = np.stack([70 + 50 * np.cos(direction), 50 * np.sin(direction)], axis=-1)
    image[:, INDEX["A"]] = to_image(a)
    got = items(run_analyses(to_image(ANATOMICAL), image, analyses=["steiner"]))["steiner", "SNA"]
    assert got["p_outside_norm"] == pytest.approx(0.3173, abs=0.015)
    lo, hi = got["interval_90"]
    assert lo == pytest.approx(82 - 1.645 * 2, abs=0.15) and hi == pytest.approx(82 + 1.645 * 2, abs=0.15)


def test_deviation_interpretation_and_norm_fields():
    got = items(run_analyses(to_image(ANATOMICAL), analyses=["steiner", "bjork_jarabak"]))
    sna = got["steiner", "SNA"]
    assert sna["deviation_sd"] == pytest.approx((sna["value"] - 82) / 2)
    assert sna["interpretation"] == "prognathic maxilla"  # about 92 deg
    assert sna["norm"]["sd_from"] == "convention" and "Steiner" in sna["norm"]["source"]
    anb = got["steiner", "ANB"]
    assert anb["norm"]["band"] == [0, 4] and anb["deviation_sd"] is None
    assert got["steiner", "Pog-NB"]["norm"] is None and got["steiner", "Pog-NB"]["norm_missing"]
    assert got["steiner", "U1-NA"]["surrogates"]
    ratio = got["bjork_jarabak", "jarabak-ratio"]
    assert ratio["norm"]["band"] == [62, 65] and ratio["deviation_sd"] is None


def test_ricketts_norms_follow_the_age():
    image = to_image(ANATOMICAL)
    at = {age: items(run_analyses(image, analyses=["ricketts"], age_years=age))["ricketts", "facial-depth"]
          for age in (None, 5, 12, 30)}
    assert at[None]["norm"]["mean"] == 87 and at[None]["norm"]["age_corrected_to"] is None
    assert at[5]["norm"]["mean"] == 87
    assert at[12]["norm"]["mean"] == pytest.approx(87 + 3 * 0.33)
    assert at[30]["norm"]["mean"] == pytest.approx(87 + 9 * 0.33)


def test_the_json_shape():
    rng = np.random.default_rng(1)
    image = to_image(ANATOMICAL)
    results = rounded(run_analyses(image, image[None] + rng.normal(0, 0.5, (50, 19, 2))))
    text = json.dumps(results, allow_nan=False)
    assert [a["name"] for a in json.loads(text)] == ["Steiner", "Downs", "Björk–Jarabak", "McNamara", "ISBI 2015"]
    item = results[0]["measurements"][0]
    for field in ("key", "name", "unit", "value", "interval_90", "norm", "deviation_sd", "interpretation",
                  "p_outside_norm", "surrogates", "rests_on", "reference"):
        assert field in item
    assert {"mean", "sd", "population", "source"} <= set(item["norm"])


def write(tmp_path, data):
    path = tmp_path / "norms.json"
    path.write_text(json.dumps(data), encoding="utf-8")
    return path


def test_a_clinic_norms_file_overrides_by_analysis_and_key(tmp_path):
    path = write(tmp_path, {"schema": 1, "sources": {"clinic": {"citation": "Our clinic, 2025, 212 adults"}},
                            "analyses": [{"key": "steiner", "measurements": [{"key": "SNA", "norms": [
                                {"mean": 84, "sd": 3, "sd_from": "source", "population": "our adults",
                                 "source": "clinic"}]}]}]})
    catalogue = with_norms_file(load_catalogue(), path)
    got = items(run_analyses(to_image(ANATOMICAL), analyses=["steiner"], catalogue=catalogue))
    assert got["steiner", "SNA"]["norm"]["mean"] == 84
    assert got["steiner", "SNA"]["norm"]["source"] == "Our clinic, 2025, 212 adults"
    assert got["steiner", "SNB"]["norm"]["mean"] == 80


@pytest.mark.parametrize("entry,words", [
    ({"mean": 84, "sd": -3, "sd_from": "source", "population": "p", "source": "steiner"},
     ["analyses[steiner].measurements[SNA].norms[0].sd", "positive"]),
    ({"mean": 84, "population": "p", "source": "nowhere"}, ["norms[0].source", "unknown source 'nowhere'"]),
    ({"mean": 84, "sd": 2, "population": "p", "source": "steiner"}, ["norms[0].sd_from"]),
    ({"low": 5, "population": "p", "source": "steiner"}, ["norms[0]", "both low and high"]),
    ({"mean": 9, "low": 1, "high": 4, "population": "p", "source": "steiner"}, ["outside the range"]),
])
def test_a_bad_norms_file_is_one_line_naming_the_entry(tmp_path, entry, words):
    path = write(tmp_path, {"schema": 1, "analyses": [{"key": "steiner", "measurements": [
        {"key": "SNA", "norms": [entry]}]}]})
    with pytest.raises(CephError) as e:
        with_norms_file(load_catalogue(), path)
    message = str(e.value)
    assert "\n" not in message and str(path) in message
    for w in words:
        assert w in message


def test_unknown_entries_and_broken_json_are_named(tmp_path):
    path = write(tmp_path, {"schema": 1, "analyses": [{"key": "steiner", "measurements": [
        {"key": "SNX", "norms": []}]}]})
    with pytest.raises(CephError, match=r"measurements\[SNX\]\.key: unknown measurement of steiner"):
        with_norms_file(load_catalogue(), path)
    path.write_text("{not json", encoding="utf-8")
    with pytest.raises(CephError, match="not valid JSON"):
        with_norms_file(load_catalogue(), path)


def test_a_bad_catalogue_definition_is_named(tmp_path):
    data = json.loads(CATALOGUE_PATH.read_text(encoding="utf-8"))
    data["analyses"][0]["measurements"][0]["definition"] = {"kind": "angle", "at": "N", "from": "S", "to": "Q"}
    path = write(tmp_path, data)
    with pytest.raises(CephError, match=r"analyses\[steiner\]\.measurements\[SNA\]\.definition\.to: unknown landmark"):
        load_catalogue(path)


def test_the_docs_catalogue_tables_are_current():
    doc = (Path(__file__).resolve().parent.parent / "docs" / "analyses.md").read_text(encoding="utf-8")
    generated = doc[doc.index(BEGIN):doc.index(END) + len(END)] + "\n"
    assert generated == catalogue_markdown(load_catalogue()), "regenerate docs/analyses.md's catalogue section"


def test_norms_in_words():
    catalogue = load_catalogue()
    words = {(a.key, m.key): norm_text(m.norms[0], m.unit) for a in catalogue.analyses for m in a.measurements
             if m.norms}
    assert words["steiner", "SNA"] == "82 ± 2° (SD by convention)"
    assert words["steiner", "ANB"] == "0 to 4° (mean 2)"
    assert words["downs", "MP-angle"].startswith("21.9° (mean only: no band)")
    assert words["bjork_jarabak", "jarabak-ratio"] == "62 to 65 %"


ROOT = Path(__file__).resolve().parents[1]
CATALOGUE_IN_PACKAGE = "CephLandmarksLib/cephalometry/analyses.json"


@pytest.mark.slow
def test_the_catalogue_ships_in_the_wheel(tmp_path):
    src = tmp_path / "src"
    shutil.copytree(ROOT / "CephLandmarksLib", src / "CephLandmarksLib", ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "README.md", "LICENSE", "CephLandmarks/Resources/requirements.txt"):
        (src / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(ROOT / name, src / name)
    run = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                          "-w", str(tmp_path / "dist"), str(src)], capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-2000:]
    (wheel,) = (tmp_path / "dist").glob("*.whl")
    assert zipfile.ZipFile(wheel).read(CATALOGUE_IN_PACKAGE) == (ROOT / CATALOGUE_IN_PACKAGE).read_bytes()


@pytest.mark.slow
def test_the_catalogue_ships_in_the_slicer_install():
    from slicer_harness import build as harness

    if harness.skip_reason():
        pytest.skip(harness.skip_reason())
    installed = harness.installed_scripted_modules()
    assert (installed / CATALOGUE_IN_PACKAGE).read_bytes() == (ROOT / CATALOGUE_IN_PACKAGE).read_bytes()
