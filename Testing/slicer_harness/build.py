"""Build and install the Slicer extension with CMake, without Slicer, to get the installed layout.

The repository's top-level CMakeLists.txt is configured against the minimal ``SlicerConfig.cmake``
in ``cmake/`` (next to this file), which brings Slicer's and CTK's real build macros from
``../shared/slicer-5.12`` (beside the repository; never copied into it).  ``cmake --install``
then gives the tree the Extensions Manager would unpack for a user; its
``lib/Slicer-5.12/qt-scripted-modules/`` folder is what Slicer scans for modules.

API:

- ``skip_reason() -> str | None``: why the build cannot run here (no cmake, no shared Slicer
  folder), or None when it can.  Use as ``pytest.skip(reason)``.
- ``cmake_available() -> bool``, ``find_cmake() -> str | None``.
- ``configure(work_dir, slicer_version="5.12.3") -> subprocess.CompletedProcess``: the configure
  step alone, into ``work_dir/build`` (does not raise; for checking configure errors).
- ``build_installed_extension(work_dir) -> Path``: configure, build and install into
  ``work_dir/install``; returns the installed ``qt-scripted-modules`` folder.  Raises
  ``BuildError`` (with cmake's output) when a step fails.
- ``installed_scripted_modules() -> Path``: the same, built once per process in a temporary
  folder (removed at exit) and shared by every caller: test files call this instead of building.
"""

from __future__ import annotations

import atexit
import functools
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
"""The repository root (holds the extension's top-level CMakeLists.txt)."""
SHARED_SLICER = ROOT.parent / "shared" / "slicer-5.12"
"""Slicer 5.12.3's build macros and Python layer (see its README.md)."""
CONFIG_DIR = Path(__file__).resolve().parent / "cmake"
"""The minimal SlicerConfig.cmake passed as Slicer_DIR."""
SLICER_VERSION = "5.12.3"
SCRIPTED_MODULES_DIR = "lib/Slicer-5.12/qt-scripted-modules"
"""Slicer_INSTALL_QTSCRIPTEDMODULES_LIB_DIR of Slicer 5.12 on Linux, relative to the install prefix."""


class BuildError(RuntimeError):
    """A cmake step failed; the message holds the command and its output."""


def find_cmake() -> str | None:
    """cmake on PATH, else the one pip's ``cmake`` package puts next to this Python."""
    found = shutil.which("cmake")
    if found:
        return found
    beside = Path(sys.executable).parent / ("cmake.exe" if os.name == "nt" else "cmake")
    return str(beside) if beside.is_file() else None


def cmake_available() -> bool:
    return find_cmake() is not None


def skip_reason() -> str | None:
    """Why the extension cannot be built here, or None when it can."""
    if not cmake_available():
        return ("cmake not found on PATH or next to sys.executable "
                "(pip install -e '.[test]' installs it)")
    if not (SHARED_SLICER / "CMake" / "SlicerMacroBuildScriptedModule.cmake").is_file():
        return f"Slicer's build macros not found at {SHARED_SLICER}"
    return None


def _run(args: list[str], cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(args, cwd=cwd, capture_output=True, text=True)


def _check(result: subprocess.CompletedProcess, step: str) -> None:
    if result.returncode != 0:
        raise BuildError(f"{step} failed ({' '.join(result.args)}):\n{result.stdout[-4000:]}\n{result.stderr[-4000:]}")


def configure(work_dir: Path, slicer_version: str = SLICER_VERSION) -> subprocess.CompletedProcess:
    """Configure the extension into ``work_dir/build`` as if against Slicer ``slicer_version``."""
    reason = skip_reason()
    if reason:
        raise BuildError(reason)
    work_dir = Path(work_dir)
    build = work_dir / "build"
    build.mkdir(parents=True, exist_ok=True)
    return _run([
        find_cmake(), "-S", str(ROOT), "-B", str(build),
        f"-DSlicer_DIR={CONFIG_DIR}",
        f"-DSLICER_HARNESS_SHARED_DIR={SHARED_SLICER}",
        f"-DSLICER_HARNESS_VERSION={slicer_version}",
        f"-DPYTHON_EXECUTABLE={sys.executable}",
        "-DCMAKE_BUILD_TYPE=Release",
    ])


def build_installed_extension(work_dir: Path) -> Path:
    """Configure, build and install the extension; returns ``work_dir/install/<qt-scripted-modules>``.

    The build lives in ``work_dir/build`` and the install tree in ``work_dir/install``.
    """
    work_dir = Path(work_dir)
    _check(configure(work_dir), "configure")
    build, install = work_dir / "build", work_dir / "install"
    cmake = find_cmake()
    _check(_run([cmake, "--build", str(build), "--parallel", "2"]), "build")
    _check(_run([cmake, "--install", str(build), "--prefix", str(install)]), "install")
    scripted = install / SCRIPTED_MODULES_DIR
    if not scripted.is_dir():
        raise BuildError(f"install gave no {SCRIPTED_MODULES_DIR} folder under {install}")
    return scripted


@functools.cache
def installed_scripted_modules() -> Path:
    """The installed ``qt-scripted-modules`` folder, built once per process and shared.

    Built in a fresh temporary folder on the first call (a few seconds) and removed when the
    process exits; later calls return the same path.  Treat it as read-only.  Raises
    ``BuildError`` when the build fails or cannot run here (check ``skip_reason()`` first).
    """
    work_dir = Path(tempfile.mkdtemp(prefix="ceph-slicer-ext-"))
    atexit.register(shutil.rmtree, work_dir, ignore_errors=True)
    return build_installed_extension(work_dir)
