"""The one requirements list (Resources/requirements.txt, also pip's list for the library),
checked before Detect, Train, Calibrate or Evaluate and installed on demand, never at start-up.

torch and torchvision come through the PyTorch extension's PyTorchUtilsLogic, which picks a
CUDA or CPU build; without that extension both are pip-installed (torchvision too: the
network imports it).  Everything else is pip-installed.  Slicer bundles numpy, scipy and
SimpleITK, so on a fresh Slicer the list to install is torch, torchvision, matplotlib,
contourpy, safetensors and tqdm.

`installWithOneMessage` runs the install for the panel: the module has already asked, so Slicer
5.12's pip_install is not let ask again (`interactive=False`), a failure gives one error message
(5.12's pip_install shows its own for a constraint conflict, then raises), and a cancel none.
"""

import contextlib
import importlib
import importlib.util
import inspect
import re

TORCH_PACKAGES = ("torch", "torchvision")
# Distribution name -> import name, where they differ.
IMPORT_NAMES = {}


def readRequirements(path) -> list:
    """[(distribution name, requirement line)] of a requirements file; comments and blanks skipped."""
    requirements = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            line = line.split("#", 1)[0].strip()
            if line:
                name = re.match(r"[A-Za-z0-9_.\-]+", line).group(0)
                requirements.append((name, line))
    return requirements


def importName(distribution) -> str:
    return IMPORT_NAMES.get(distribution, distribution)


def missingRequirements(requirements, findSpec=importlib.util.find_spec) -> list:
    """The requirements whose package cannot be imported (versions are left to pip)."""
    importlib.invalidate_caches()
    return [(name, line) for name, line in requirements if findSpec(importName(name)) is None]


def installRequirements(missing, pipInstall, torchInstaller=None) -> None:
    """Install the missing requirements: torch and torchvision through `torchInstaller(torchLine,
    torchvisionLine)` when given (PyTorch Utils), else with pip like the rest."""
    lines = dict(missing)
    torchLines = [lines.pop(name) for name in TORCH_PACKAGES if name in lines]
    if torchLines and torchInstaller is not None:
        everything = dict(missing)
        torchInstaller(everything.get("torch", "torch"), everything.get("torchvision", "torchvision"))
    elif torchLines:
        pipInstall(torchLines)
    if lines:
        pipInstall(list(lines.values()))
    importlib.invalidate_caches()


def pyTorchUtilsInstaller():
    """A torch installer from the PyTorch extension (torch *and* torchvision), or None without it."""
    try:
        import PyTorchUtils
    except ImportError:
        return None

    def install(torchLine, torchvisionLine):
        version = lambda line: line[len(re.match(r"[A-Za-z0-9_.\-]+", line).group(0)):].strip() or None  # noqa: E731
        if PyTorchUtils.PyTorchUtilsLogic().installTorch(
                askConfirmation=False, torchVersionRequirement=version(torchLine),
                torchvisionVersionRequirement=version(torchvisionLine)) is None:
            raise RuntimeError("PyTorch Utils did not install torch")

    return install


def quietPipInstall(pipInstall):
    """pip_install that does not ask again where Slicer's asks (5.12: `interactive`); the module has asked."""
    try:
        parameters = inspect.signature(pipInstall).parameters.values()
    except (TypeError, ValueError):
        return pipInstall
    if any(p.name == "interactive" or p.kind == p.VAR_KEYWORD for p in parameters):
        return lambda requirements: pipInstall(requirements, interactive=False)
    return pipInstall


@contextlib.contextmanager
def errorDisplaysRecorded(util, app):
    """util.errorDisplay records what it shows while the block runs, and shows it without the wait cursor."""
    shown, original = [], util.errorDisplay

    def recorded(*args, **kwargs):
        shown.append(args[0] if args else kwargs.get("text", ""))
        cursors = 0
        while app.overrideCursor() is not None:  # a modal message must not look busy
            app.restoreOverrideCursor()
            cursors += 1
        try:
            return original(*args, **kwargs)
        finally:
            for _ in range(cursors):
                app.setOverrideCursor(_waitCursor())

    util.errorDisplay = recorded
    try:
        yield shown
    finally:
        util.errorDisplay = original


def _waitCursor():
    import qt

    return qt.QCursor(qt.Qt.WaitCursor)


def installWithOneMessage(missing, util, app, torchInstaller=None):
    """Install the missing requirements under a wait cursor. Returns None when done, "" when the user
    cancelled or Slicer has already shown why it failed, else the reason to show (one message)."""
    with errorDisplaysRecorded(util, app) as shown:
        app.setOverrideCursor(_waitCursor())
        try:
            installRequirements(missing, quietPipInstall(util.pip_install), torchInstaller)
        except Exception as e:  # pip, uv, light-the-torch: whatever failed, the user gets one line
            if type(e).__name__ == "InstallationAbortedError" or shown:
                return ""
            return str(e) or type(e).__name__
        finally:
            app.restoreOverrideCursor()
    return None
