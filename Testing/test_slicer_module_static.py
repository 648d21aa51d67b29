"""Checks of the Slicer module that need no Slicer GUI: it compiles, every self.ui.<name> it uses
exists in the .ui file, the .ui's parameter bindings exist, the MRML modules' imports stay headless,
and the CMake lists name files that exist."""

import ast
import py_compile
import re
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
MODULE = ROOT / "CephLandmarks" / "CephLandmarks.py"
HELPERS = ROOT / "CephLandmarks" / "CephLandmarksSlicer"
# The MRML-only helpers: no qt, no slicer.app (they run headless under slicer-core).
MRML = [HELPERS / f"{name}.py" for name in ("volumes", "record", "markups", "maps", "contours", "heatmap", "review",
                                             "tables", "measurements", "exports", "detection", "clinic",
                                             "analysisTable", "analysisLines")]
# The panel's sections and what they import: imported when Slicer loads the module file.
SECTIONS = [HELPERS / f"{name}.py" for name in ("detectSection", "landmarksSection", "trainingSection")]
LOADED_WITH_MODULE = SECTIONS + [HELPERS / f"{name}.py" for name in ("__init__", "parameters", "i18n")]
UI = ROOT / "CephLandmarks" / "Resources" / "UI" / "CephLandmarks.ui"


def uiWidgets():
    return {w.get("name"): w for w in ET.parse(UI).iter("widget")}


@pytest.mark.parametrize("path", [MODULE, *sorted(HELPERS.glob("*.py"))], ids=lambda p: p.name)
def test_compiles(path, tmp_path):
    py_compile.compile(str(path), cfile=str(tmp_path / "out.pyc"), doraise=True)


def topLevelHelperImports(path):
    """The CephLandmarksSlicer modules a file imports when it is loaded (outside any function)."""
    tree = ast.parse(path.read_text())
    names = set()
    for node in tree.body:
        if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module.startswith("CephLandmarksSlicer."):
            names.add(node.module.split(".", 1)[1])
        elif isinstance(node, ast.ImportFrom) and node.level == 1 and node.module:
            names.add(node.module)
    return names


@pytest.mark.parametrize("path", [MODULE, *LOADED_WITH_MODULE], ids=lambda p: p.name)
def test_module_file_parses_as_python_3_9(path):
    """Slicer 5.8 and older run Python 3.9: the module file, and the helpers it loads with it, must load there to
    tell the user to upgrade."""
    ast.parse(path.read_text(), feature_version=(3, 9))
    loaded = {p.stem for p in LOADED_WITH_MODULE}
    assert topLevelHelperImports(path) <= loaded, topLevelHelperImports(path) - loaded


def test_one_dependency_list():
    """pyproject.toml reads the module's requirements list, and every third-party import of the library is on it."""
    pyproject = (ROOT / "pyproject.toml").read_text()
    assert 'dependencies = { file = ["CephLandmarks/Resources/requirements.txt"] }' in pyproject
    listed = {re.match(r"[A-Za-z0-9_.\-]+", line).group(0) for line in
              (ROOT / "CephLandmarks" / "Resources" / "requirements.txt").read_text().splitlines()
              if line.strip() and not line.startswith("#")}
    imported = set()
    for path in (ROOT / "CephLandmarksLib").glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                imported |= {a.name.split(".")[0] for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                imported.add(node.module.split(".")[0])
    third_party = {m for m in imported if m not in sys.stdlib_module_names and m != "CephLandmarksLib"}
    assert third_party <= listed, third_party - listed
    assert "torchvision" in listed and "tqdm" in listed and "matplotlib" in listed


def test_every_ui_name_used_exists():
    """In the module file and in the sections whose slots its widget has."""
    used = set()
    for path in (MODULE, *SECTIONS):
        used |= {node.attr for node in ast.walk(ast.parse(path.read_text()))
                 if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Attribute)
                 and node.value.attr == "ui" and isinstance(node.value.value, ast.Name)
                 and node.value.value.id == "self"}
    assert len(used) > 20
    missing = used - set(uiWidgets())
    assert not missing, f"widgets used by CephLandmarks.py but absent from the .ui file: {sorted(missing)}"


def test_parameter_bindings_exist():
    tree = ast.parse(MODULE.read_text())
    cls = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == "CephLandmarksParameterNode")
    fields = {n.target.id for n in cls.body if isinstance(n, ast.AnnAssign)}
    bound = {}
    for name, w in uiWidgets().items():
        for p in w.findall("property"):
            if p.get("name") == "SlicerParameterName":
                bound[name] = p.find("string").text
    assert set(bound.values()) <= fields, set(bound.values()) - fields
    assert {"inputVolume", "landmarks", "showContours", "showHeatmap", "datasetFolder", "epochs"} <= set(bound.values())


def test_ui_file_is_valid_designer_xml():
    root = ET.parse(UI).getroot()
    assert root.tag == "ui" and root.find("widget").get("class") == "qMRMLWidget"
    custom = {c.find("class").text for c in root.iter("customwidget")}
    used = {w.get("class") for w in root.iter("widget")}
    qtClasses = {c for c in used if c.startswith("Q")}
    assert used - qtClasses <= custom, "every non-Qt widget class must be declared as a customwidget"


@pytest.mark.parametrize("path", MRML, ids=lambda p: p.name)
def test_mrml_module_stays_headless(path):
    tree = ast.parse(path.read_text())
    imported, helpers = set(), set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level:  # this package: MRML-only modules only
            helpers |= {node.module} if node.module else {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            imported.add(node.module.split(".")[0])
    allowed = {"numpy", "vtk", "slicer", "CephLandmarksLib"}  # third-party: only what Slicer bundles
    assert {m for m in imported if m not in sys.stdlib_module_names} <= allowed, imported
    assert helpers <= {p.stem for p in MRML}, helpers
    used = {n.attr for n in ast.walk(tree)
            if isinstance(n, ast.Attribute) and isinstance(n.value, ast.Name) and n.value.id == "slicer"}
    assert all(name.startswith("vtk") for name in used), used  # MRML classes only: no app, mrmlScene, util


def test_no_installs_in_setup_and_no_pins():
    tree = ast.parse(MODULE.read_text())
    setup = next(n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef) and n.name == "setup")
    assert "pip_install" not in ast.dump(setup) and "installTorch" not in ast.dump(setup)
    requirements = (ROOT / "CephLandmarks" / "Resources" / "requirements.txt").read_text()
    assert not re.search(r"^[^#].*==", requirements, re.M)


def test_cmake_lists_name_existing_files():
    """The CMake lists name files and globs that exist (the build itself: test_extension_build.py)."""
    top = (ROOT / "CMakeLists.txt").read_text()
    assert "project(CephLandmarks)" in top and "add_subdirectory(CephLandmarks)" in top
    assert re.search(r'EXTENSION_DEPENDS\s+"?PyTorch', top)
    assert re.search(r"if\(Slicer_VERSION VERSION_LESS", top), "the minimum Slicer version check"
    # Extension URLs into this repository's main branch name files that exist.
    for text in (top, (ROOT / "CephLandmarks.s4ext").read_text()):
        for path in re.findall(r'raw\.githubusercontent\.com/CephLandmarks/SlicerCephLandmarks/main/([^\s")]+)', text):
            assert (ROOT / path).is_file(), path
    module = (ROOT / "CephLandmarks" / "CMakeLists.txt").read_text().replace("${MODULE_NAME}", "CephLandmarks")
    assert "slicerMacroBuildScriptedModule" in module
    assert "CephLandmarksMRML" not in module
    listed = re.findall(r"^\s+((?:Resources/)?[\w/]+\.\w+)\s*$", module, re.M)  # SCRIPTS / RESOURCES entries
    assert {"CephLandmarks.py", "Resources/UI/CephLandmarks.ui", "Resources/Icons/CephLandmarks.png",
            "Resources/requirements.txt"} <= set(listed), listed
    for name in listed:
        assert (ROOT / "CephLandmarks" / name).is_file(), name
    globs = re.findall(r"file\((GLOB|GLOB_RECURSE) \w+ RELATIVE \S+ CONFIGURE_DEPENDS\s+"
                       r"\$\{(CMAKE_CURRENT_SOURCE_DIR|PROJECT_SOURCE_DIR)\}/([\w/]+/\*\.\w+)\)", module)
    assert {g for _, _, g in globs} >= {"CephLandmarksSlicer/*.py", "CephLandmarksLib/*.py",
                                        "CephLandmarksLib/*.json", "Resources/Models/*.safetensors",
                                        "Resources/Models/*.json"}  # the models' sidecars, installed beside them
    for kind, base, pattern in globs:
        if pattern == "Resources/Models/*.json":
            continue  # the shipped model may have no sidecar
        folder = ROOT / "CephLandmarks" if base == "CMAKE_CURRENT_SOURCE_DIR" else ROOT
        top_folder, suffix = pattern.rsplit("/", 1)
        found = (folder / top_folder).rglob(suffix) if kind == "GLOB_RECURSE" else folder.glob(pattern)
        assert list(found), f"{kind} {base}/{pattern} matches nothing"


def test_mrml_module_needs_no_torch():
    """The table, exports and node code must work in a Slicer where torch is not installed yet."""
    import subprocess
    import sys

    pytest.importorskip("slicer")
    code = ("import sys; sys.modules['torch'] = None; sys.path[:0] = ['.', 'CephLandmarks']; "
            f"from CephLandmarksSlicer import {', '.join(p.stem for p in MRML)}")
    root = Path(__file__).resolve().parents[1]
    r = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-800:]
