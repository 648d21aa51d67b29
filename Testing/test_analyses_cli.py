"""The named analyses on the command line: `ceph-landmarks analyses`, and detect/report's --analyses,
--norms, --horizontal, --age, --sex (a bad one: one line, exit 2, nothing written, no model loaded)."""

import json

import pytest

from CephLandmarksLib.cephalometry.catalogue_listing import BEGIN
from CephLandmarksLib.cli import build_parser, main


def test_the_analyses_command_lists_the_catalogue(capsys):
    assert main(["analyses"]) == 0
    out = capsys.readouterr().out
    assert out.startswith(BEGIN) and "### Steiner (`steiner`)" in out and "### ISBI 2015 (`isbi2015`)" in out


@pytest.mark.parametrize("argv, words", [
    (["--analyses", "steiner,stiener"], "unknown analysis 'stiener'"),
    (["--norms", "no-such-norms.json"], "--norms no-such-norms.json: no such file"),
    (["--horizontal", "sideways"], "unknown horizontal 'sideways'"),
    (["--horizontal", "downs=up"], "--horizontal 'downs=up'"),
    (["--age", "400"], "--age"),
    (["--sex", "x"], "--sex"),
])
def test_a_bad_analysis_option_is_one_line_and_exit_2(tmp_path, capsys, argv, words):
    out = tmp_path / "out"
    for command in ("detect", "report"):
        assert main([command, str(tmp_path / "x.png"), "--out-dir", str(out), *argv]) == 2
        err = capsys.readouterr().err
        assert words in err and len(err.strip().splitlines()) == 1
    assert not out.exists()


def test_a_bad_norms_file_names_the_entry(tmp_path, capsys):
    norms = tmp_path / "norms.json"
    norms.write_text(json.dumps({"schema": 1, "analyses": [{"key": "steiner", "measurements": [
        {"key": "SNA", "norms": [{"mean": 82, "sd": -2, "population": "clinic", "source": "clinic"}]}]}]}))
    assert main(["detect", str(tmp_path / "x.png"), "--norms", str(norms)]) == 2
    err = capsys.readouterr().err
    assert "norms.json" in err and "SNA" in err and len(err.strip().splitlines()) == 1


def test_the_options_parse_into_checked_analysis_options():
    from CephLandmarksLib.outputs.analysis_cli import analysis_options

    a = build_parser().parse_args(["report", "x.png", "--analyses", "all", "--horizontal", "downs=constructed",
                                   "--age", "12", "--sex", "female"])
    options = analysis_options(a)
    assert len(options.keys()) == 10 and options.horizontal == {"downs": "constructed"}
    assert options.context()["age_source"] == "user" and options.context()["sex"] == "female"
    help_text = build_parser()._subparsers._group_actions[0].choices["detect"].format_help()
    assert "default: Steiner, Downs" in " ".join(help_text.split())


def test_detect_writes_the_chosen_analyses_and_their_tracing(tiny_model, generic_dataset, tmp_path):
    out = tmp_path / "out"
    assert main(["detect", str(generic_dataset / "img09.png"), "--model", str(tiny_model), "--out-dir", str(out),
                 "--analyses", "all", "--horizontal", "constructed", "--age", "14", "--sex", "male"]) == 0
    j = json.loads((out / "img09.json").read_text())
    assert len(j["analyses"]) == 10 and "measurements" in j
    assert j["analyses_context"]["age_years"] == 14 and j["analyses_context"]["horizontal"] == "constructed"
    downs = next(a for a in j["analyses"] if a["key"] == "downs")
    assert downs["horizontal"].startswith("constructed")
    assert (out / "img09.png").read_bytes()[:4] == b"\x89PNG"
