"""The layer contracts in pyproject.toml hold, and they would catch a broken one.

import-linter (`lint-imports`) reads the contracts from pyproject.toml and counts imports made inside
functions too.  The Slicer module file (CephLandmarks.py) is a lone module, which import-linter cannot
take as a root package, so its imports are checked here with ast against the same forbidden list.
"""

import ast
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import tomllib

ROOT = Path(__file__).resolve().parents[1]
MODULE_DIR = ROOT / "CephLandmarks"
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")

needs_linter = pytest.mark.skipif(not LINT_IMPORTS.exists(),
                                  reason="import-linter is not installed (pip install -e '.[test]')")


def lint_imports(root: Path) -> subprocess.CompletedProcess:
    """lint-imports over the library and the Slicer helpers under root, with root's pyproject.toml."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(root), str(root / "CephLandmarks")])}
    return subprocess.run([str(LINT_IMPORTS), "--config", str(root / "pyproject.toml"), "--no-cache"],
                          cwd=root, env=env, capture_output=True, text=True, timeout=300)


def contracts() -> list:
    return tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["tool"]["importlinter"]["contracts"]


@needs_linter
def test_the_contracts_are_kept():
    run = lint_imports(ROOT)
    assert run.returncode == 0, run.stdout + run.stderr
    assert f"Contracts: {len(contracts())} kept, 0 broken." in run.stdout


def _copy_tree(tmp_path: Path) -> Path:
    for name in ("CephLandmarksLib", "CephLandmarks/CephLandmarksSlicer"):
        shutil.copytree(ROOT / name, tmp_path / name, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    return tmp_path


@needs_linter
@pytest.mark.slow
@pytest.mark.parametrize("module, importer, line, contract", [
    # a lazy import inside a function, upward: imaging -> network
    ("CephLandmarksLib/imaging/images.py", "CephLandmarksLib.imaging.images",
     "def _up():\n    from ..network import inputs  # noqa\n", "Library layers"),
    # the detection result (read in Slicer's own process) reaching torch through the predictor
    ("CephLandmarksLib/detection/result.py", "CephLandmarksLib.detection.result",
     "def _up():\n    from . import predictor  # noqa\n", "never imports torch"),
    # a Slicer helper reaching training
    ("CephLandmarks/CephLandmarksSlicer/process.py", "CephLandmarksSlicer.process",
     "def _up():\n    from CephLandmarksLib.training import loop  # noqa\n",
     "Slicer helpers never import"),
], ids=["layers", "torch-free", "slicer-helpers"])
def test_a_broken_contract_fails_naming_the_import(tmp_path, module, importer, line, contract):
    root = _copy_tree(tmp_path)
    with open(root / module, "a", encoding="utf-8") as f:
        f.write("\n\n" + line)
    run = lint_imports(root)
    text = " ".join(run.stdout.split())  # lint-imports wraps long lines
    (name,) = [c["name"] for c in contracts() if contract in c["name"]]
    assert run.returncode != 0
    assert re.search(re.escape(name) + r"\s*BROKEN", text), text
    assert f"{importer} ->" in text, run.stdout


def _imports(path: Path) -> set:
    """Every module path the file imports, at the top or inside a function."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names |= {node.module} | {f"{node.module}.{a.name}" for a in node.names}
    return names


def _slicer_forbidden() -> list:
    (helpers,) = [c for c in contracts() if c.get("source_modules") == ["CephLandmarksSlicer"]]
    return helpers["forbidden_modules"]


def test_the_module_file_keeps_the_slicer_helpers_contract():
    forbidden = _slicer_forbidden()
    bad = sorted(n for n in _imports(MODULE_DIR / "CephLandmarks.py")
                 if any(n == f or n.startswith(f + ".") for f in forbidden))
    assert bad == []


def test_the_module_file_check_sees_a_lazy_import(tmp_path):
    # The ast check above would catch a lazy import of training in the module file.
    module = tmp_path / "CephLandmarks.py"
    module.write_text("def f():\n    from CephLandmarksLib.training.loop import train\n", encoding="utf-8")
    assert "CephLandmarksLib.training.loop" in _imports(module)
    assert "CephLandmarksLib.training" in _slicer_forbidden()
