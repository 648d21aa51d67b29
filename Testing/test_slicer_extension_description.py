"""What the ExtensionsIndex checks on CephLandmarks.json beyond its schema (test_extension_build.py),
offline: the formatting its pre-commit prettier enforces (multilineArraysWrapThreshold 0: every array
one item a line), the schema through jsonschema itself, and a repository name that
`check_git_repository_name` accepts, the same in every URL of the description, the .s4ext and the CMake lists.

The prettier check runs where node, prettier and prettier-plugin-multiline-arrays are found
(CEPH_PRETTIER_NODE_MODULES, ./node_modules or npm's global folder) and skips otherwise; the
pure-Python check of the same rules always runs."""

import json
import os
import re
import shutil
import subprocess
from pathlib import Path
from urllib.parse import urlsplit

import pytest

ROOT = Path(__file__).resolve().parents[1]
DESCRIPTION = ROOT / "CephLandmarks.json"
SCHEMA = ROOT.parent / "shared" / "slicer-5.12" / "Schemas" / "slicer-extension-catalog-entry-schema-v1.0.2.json"
PUBLISHED = "https://github.com/CephLandmarks/SlicerCephLandmarks"  # docs/slicer.md, "Publishing"


def formattingProblems(text) -> list:
    """Where text differs from prettier's JSON with multilineArraysWrapThreshold 0: two-space indent, one
    key and one array item a line, brackets on their own lines, a final newline (for a file of plain
    strings, numbers and booleans, exactly json.dumps(indent=2))."""
    try:
        expected = json.dumps(json.loads(text), indent=2, ensure_ascii=False) + "\n"
    except json.JSONDecodeError as e:
        return [f"not JSON: {e}"]
    if text == expected:
        return []
    have, want = text.splitlines(), expected.splitlines()
    problems = [f"line {i + 1}: {a!r}, expected {b!r}" for i, (a, b) in enumerate(zip(have, want, strict=False))
                if a != b]
    return problems or [f"{len(have)} lines, expected {len(want)} (or no final newline)"]


def test_description_is_formatted_as_the_index_requires():
    assert formattingProblems(DESCRIPTION.read_text(encoding="utf-8")) == []


def test_formatting_check_catches_what_prettier_would_change():
    good = '{\n  "build_dependencies": [\n    "PyTorch"\n  ],\n  "tier": 1\n}\n'
    assert formattingProblems(good) == []
    for bad in ('{\n  "build_dependencies": ["PyTorch"],\n  "tier": 1\n}\n',  # an array on one line
                '{\n    "build_dependencies": [\n        "PyTorch"\n    ],\n    "tier": 1\n}\n',  # four spaces
                '{\n  "build_dependencies": [\n    "PyTorch"\n  ],\n  "tier": 1\n}',  # no final newline
                '{"tier": 1}\n', "{\n  \"tier\": 1,\n}\n"):
        assert formattingProblems(bad), bad


def prettierFolder():
    """node_modules holding prettier and prettier-plugin-multiline-arrays, or None."""
    if shutil.which("node") is None:
        return None
    candidates = [os.environ.get("CEPH_PRETTIER_NODE_MODULES", ""), str(ROOT / "node_modules")]
    if shutil.which("npm"):
        try:
            candidates.append(subprocess.run(["npm", "root", "-g"], capture_output=True, text=True, timeout=30,
                                             check=False).stdout.strip())
        except (OSError, subprocess.TimeoutExpired):
            pass
    for folder in filter(None, candidates):
        folder = Path(folder)
        if (folder / "prettier" / "bin" / "prettier.cjs").is_file() and (
                folder / "prettier-plugin-multiline-arrays").is_dir():
            return folder
    return None


@pytest.mark.slow
def test_prettier_with_the_index_configuration_accepts_the_description(tmp_path):
    folder = prettierFolder()
    if folder is None:
        pytest.skip("node with prettier and prettier-plugin-multiline-arrays not found "
                    "(npm install prettier@3.5.3 prettier-plugin-multiline-arrays@4.0.3; "
                    "CEPH_PRETTIER_NODE_MODULES=<its node_modules>)")
    config = tmp_path / "prettierrc.json"
    config.write_text(json.dumps({"multilineArraysWrapThreshold": 0}))
    check = lambda path: subprocess.run(  # noqa: E731 - the plugin is found from the working directory
        ["node", str(folder / "prettier" / "bin" / "prettier.cjs"), "--config", str(config), "--no-editorconfig",
         "--plugin", "prettier-plugin-multiline-arrays", "--check", str(path)],
        capture_output=True, text=True, timeout=120, check=False, cwd=folder.parent)
    result = check(DESCRIPTION)
    assert result.returncode == 0, result.stdout + result.stderr
    oneLine = tmp_path / "oneline.json"  # and the check does bite: an array on one line is refused
    oneLine.write_text('{\n  "build_dependencies": ["PyTorch"]\n}\n')
    assert check(oneLine).returncode != 0


@pytest.mark.skipif(not SCHEMA.is_file(), reason=f"the catalog-entry schema is not at {SCHEMA}")
def test_description_validates_against_the_schema_with_jsonschema():
    jsonschema = pytest.importorskip("jsonschema")
    schema = json.loads(SCHEMA.read_text())
    entry = json.loads(DESCRIPTION.read_text())
    jsonschema.validate(entry, schema)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({**entry, "build_dependencies": "PyTorch"}, schema)


def repositoryNameAccepted(scmUrl) -> bool:
    """ExtensionsIndex's check_git_repository_name: the repository name holds 'slicer'."""
    name = os.path.splitext(urlsplit(scmUrl).path.split("/")[-1])[0]
    return "slicer" in name.lower()


def test_repository_name_is_accepted_and_the_same_everywhere():
    entry = json.loads(DESCRIPTION.read_text())
    assert repositoryNameAccepted(entry["scm_url"]) and not repositoryNameAccepted("https://github.com/a/CephLandmarks")
    assert entry["scm_url"].removesuffix(".git") == PUBLISHED
    texts = {p: (ROOT / p).read_text() for p in ("CMakeLists.txt", "CephLandmarks.s4ext", "CephLandmarks.json")}
    owner, name = urlsplit(PUBLISHED).path.strip("/").split("/")
    for path, text in texts.items():
        for url in re.findall(r"https://[^\s\"')]+", text):
            if "/Slicer/Slicer/" in url:  # the schema's own address
                continue
            host = urlsplit(url).netloc
            if host == "github.com":
                assert url.removesuffix(".git") == PUBLISHED, (path, url)
            elif host == "raw.githubusercontent.com":
                assert url.startswith(f"https://raw.githubusercontent.com/{owner}/{name}/main/"), (path, url)
    assert PUBLISHED.split("/")[-1] in (ROOT / "docs" / "slicer.md").read_text()
