"""The wheel holds every module of the library, subpackages included: a fixed package list once
dropped subpackages silently (the Slicer install is checked in test_extension_build.py)."""

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def library_modules(root: Path) -> list:
    lib = root / "CephLandmarksLib"
    return sorted(p.relative_to(root).as_posix() for p in lib.rglob("*.py") if "__pycache__" not in p.parts)


@pytest.mark.slow
def test_the_wheel_holds_every_module(tmp_path):
    src = tmp_path / "src"  # a copy: building in the work tree would leave build/ and egg-info behind
    shutil.copytree(ROOT / "CephLandmarksLib", src / "CephLandmarksLib", ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "README.md", "LICENSE", "CephLandmarks/Resources/requirements.txt"):
        (src / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(ROOT / name, src / name)
    run = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                          "-w", str(tmp_path / "dist"), str(src)], capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-2000:]
    (wheel,) = (tmp_path / "dist").glob("*.whl")
    names = sorted(n for n in zipfile.ZipFile(wheel).namelist()
                   if n.startswith("CephLandmarksLib/") and n.endswith(".py"))
    assert len(names) > 40 and names == library_modules(ROOT)
