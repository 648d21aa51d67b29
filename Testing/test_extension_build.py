"""The Slicer extension as the Extensions Manager would install it: CMake configures, builds and
installs it against Slicer 5.12's real build macros (../shared/slicer-5.12, through the minimal
SlicerConfig.cmake in slicer_harness/cmake), and the installed qt-scripted-modules folder holds
exactly the module file, its helper package, the library and the resources.  Also: the build
refuses Slicer older than 5.10, and the ExtensionsIndex description (CephLandmarks.json) follows
the catalog-entry schema and agrees with CephLandmarks.s4ext and the CMake lists."""

import json
import re
from pathlib import Path

import pytest

from slicer_harness import build as harness

ROOT = Path(__file__).resolve().parent.parent
MODULE_DIR = ROOT / "CephLandmarks"
SCHEMA = ROOT.parent / "shared" / "slicer-5.12" / "Schemas" / "slicer-extension-catalog-entry-schema-v1.0.2.json"

needs_build = pytest.mark.skipif(harness.skip_reason() is not None, reason=harness.skip_reason() or "")


@pytest.fixture(scope="module")
def installed():
    """The installed qt-scripted-modules folder (one build per test process, shared)."""
    return harness.installed_scripted_modules()


def py_names(folder):
    return sorted(p.name for p in folder.glob("*.py"))


def tree_py_names(folder):
    """The .py files under folder, its subfolders included, as relative paths."""
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*.py") if "__pycache__" not in p.parts)


@needs_build
def test_only_the_module_file_is_a_top_level_script(installed):
    # Slicer loads every top-level *.py of qt-scripted-modules as a module.
    assert py_names(installed) == ["CephLandmarks.py"]
    top = sorted(p.name for p in installed.iterdir())
    assert top == ["CephLandmarks.py", "CephLandmarks.pyc", "CephLandmarksLib", "CephLandmarksSlicer", "Resources"], top
    assert installed.as_posix().endswith("lib/Slicer-5.12/qt-scripted-modules")


@needs_build
@pytest.mark.parametrize("package, source", [
    ("CephLandmarksSlicer", MODULE_DIR / "CephLandmarksSlicer"),
    ("CephLandmarksLib", ROOT / "CephLandmarksLib"),
], ids=["CephLandmarksSlicer", "CephLandmarksLib"])
def test_packages_installed_whole(installed, package, source):
    # Every module, in every subpackage: a flat glob once dropped subpackages silently.
    names = tree_py_names(source)
    assert names and tree_py_names(installed / package) == names
    for name in names:
        assert (installed / package / name).read_bytes() == (source / name).read_bytes(), name


@needs_build
def test_every_script_byte_compiled(installed):
    # ctkMacroCompilePythonScript writes <file>.pyc beside each script it compiled; a script with
    # a syntax error gets none (the macro only prints the error).
    scripts = list(installed.rglob("*.py"))
    assert len(scripts) > 20
    missing = [str(p.relative_to(installed)) for p in scripts if not p.with_suffix(".pyc").is_file()]
    assert not missing, f"not byte-compiled (syntax error?): {missing}"


@needs_build
def test_resources_installed(installed):
    expected = {f"Resources/{name}": MODULE_DIR / "Resources" / name
                for name in ("UI/CephLandmarks.ui", "Icons/CephLandmarks.png", "requirements.txt")}
    models = sorted((ROOT / "Resources" / "Models").glob("*.safetensors"))
    assert models
    expected.update({f"Resources/Models/{m.name}": m for m in models})
    for rel, source in expected.items():
        target = installed / rel
        assert target.is_file(), rel
        assert target.stat().st_size == source.stat().st_size and target.read_bytes() == source.read_bytes(), rel
    installed_resources = {p.relative_to(installed).as_posix()
                           for p in (installed / "Resources").rglob("*") if p.is_file()}
    assert installed_resources == set(expected)


@needs_build
def test_the_library_finds_the_shipped_models(installed):
    # CephLandmarksLib looks for its models in CephLandmarksLib/../Resources/Models.
    assert list((installed / "CephLandmarksLib" / ".." / "Resources" / "Models").glob("*.safetensors"))


@needs_build
def test_module_unittest_registered(installed):
    # <work>/install/lib/Slicer-5.12/qt-scripted-modules -> <work>/build (build_installed_extension)
    registered = (installed.parents[2].parent / "build" / "slicer_harness_python_unittests.txt").read_text().split()
    assert "CephLandmarks.py" in registered


@needs_build
def test_older_slicer_is_refused(tmp_path):
    result = harness.configure(tmp_path, slicer_version="5.8.1")
    assert result.returncode != 0
    message = " ".join(result.stderr.split())  # CMake wraps long messages
    assert "CephLandmarks needs 3D Slicer 5.10 or later" in message, result.stderr[-2000:]
    assert "this is Slicer 5.8" in message


# ---------------------------------------------------------------------------- extension description

def s4ext():
    fields = {}
    for line in (ROOT / "CephLandmarks.s4ext").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            key, _, value = line.partition(" ")
            fields[key] = value.strip()
    return fields


def description():
    return json.loads((ROOT / "CephLandmarks.json").read_text())


TYPES = {"string": str, "array": list, "boolean": bool, "integer": int, "object": dict}


def schema_errors(entry, schema):
    """The parts of JSON-schema validation the catalog-entry schema uses (a hand check, no jsonschema)."""
    errors = [f"missing required key {k!r}" for k in schema["required"] if k not in entry]
    props = schema["properties"]
    if schema.get("additionalProperties") is False:
        errors += [f"key {k!r} not in the schema" for k in entry if k not in props]
    for key, value in entry.items():
        spec = props.get(key)
        if spec is None:
            continue
        kind = TYPES[spec["type"]]
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            errors.append(f"{key}: {value!r} is not of type {spec['type']}")
            continue
        if "enum" in spec and value not in spec["enum"]:
            errors.append(f"{key}: {value!r} not one of {spec['enum']}")
        if "minimum" in spec and value < spec["minimum"] or "maximum" in spec and value > spec["maximum"]:
            errors.append(f"{key}: {value!r} out of range")
        if spec["type"] == "array" and "items" in spec:
            item_kind = TYPES[spec["items"]["type"]]
            errors += [f"{key}: item {v!r} is not of type {spec['items']['type']}"
                       for v in value if not isinstance(v, item_kind)]
    return errors


@pytest.mark.skipif(not SCHEMA.is_file(), reason=f"the catalog-entry schema is not at {SCHEMA}")
def test_json_description_follows_the_schema():
    schema = json.loads(SCHEMA.read_text())
    entry = description()
    assert entry["$schema"].rstrip("#") == schema["$id"].rstrip("#")
    assert not schema_errors(entry, schema)
    try:
        import jsonschema
    except ImportError:
        return
    jsonschema.validate(entry, schema)


def test_schema_check_catches_mistakes():
    schema = {"required": ["category"], "additionalProperties": False,
              "properties": {"category": {"type": "string"}, "tier": {"type": "integer", "minimum": 1, "maximum": 5},
                             "build_dependencies": {"type": "array", "items": {"type": "string"}}}}
    assert not schema_errors({"category": "Q", "tier": 1, "build_dependencies": ["PyTorch"]}, schema)
    assert len(schema_errors({"tier": True, "description": "x", "build_dependencies": [1]}, schema)) == 4
    assert schema_errors({"category": "Q", "tier": 6}, schema)


def test_json_description_agrees_with_s4ext_and_cmake():
    entry, old = description(), s4ext()
    top = (ROOT / "CMakeLists.txt").read_text()
    cmake = {m[0]: m[1] or m[2] for m in re.findall(r'^set\((EXTENSION_\w+)\s+(?:"([^"]*)"|([^\s")]+))\)', top, re.M)}
    assert entry["category"] == old["category"] == cmake["EXTENSION_CATEGORY"] == "Quantification"
    assert entry["build_dependencies"] == old["depends"].split() == cmake["EXTENSION_DEPENDS"].split() == ["PyTorch"]
    assert entry["scm_url"] == old["scmurl"]
    assert entry["scm_url"].removesuffix(".git") == cmake["EXTENSION_HOMEPAGE"] == old["homepage"]
    assert entry.get("scm_type", "git") == old["scm"] == "git"
    assert entry["scm_revision"] == old["scmrevision"]
    assert entry.get("build_subdirectory", ".") == old["build_subdirectory"] == cmake["EXTENSION_BUILD_SUBDIRECTORY"]
    assert entry.get("enabled", True) == (old["enabled"] == "1")
    assert entry.get("tier", 1) == int(old.get("tier", 1))
    assert old["iconurl"] == cmake["EXTENSION_ICONURL"]
    assert old["screenshoturls"] == cmake["EXTENSION_SCREENSHOTURLS"]
    for text in (old["description"], cmake["EXTENSION_DESCRIPTION"]):
        assert "Slicer 5.10 or later" in text
