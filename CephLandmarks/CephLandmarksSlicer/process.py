"""The ceph-landmarks CLI run by PythonSlicer in a separate process, as SlicerMONAIAuto3DSeg does.

Slicer holds Python's interpreter lock around its event loop, so heavy work in a Python
thread is starved; a separate process runs at full speed and can really be cancelled (killed).
`BackgroundProcess` wraps a qt.QProcess: output arrives line by line (QByteArray.data(), as
PythonQt has no buffer protocol), and the end through `finished(int,QProcess::ExitStatus)`,
connected by its full signature (a bare `.finished.connect` takes Qt's first overload,
`finished(int)`); `cliProcess` makes one with the library on the child's path.  `DetectionJob`
is one Detect press: the volume goes in as a NAME.radiograph.npz, `detect --heatmaps` writes
the JSON and the heatmaps into a temporary folder, and the result is loaded on the main thread;
the folder is removed in every case.  With the second stage (`--refine`), the JSON has a "refiner"
record and each point "refined", and the heatmaps file is format 2 with the fine maps:
load_detection reads both into the Detection (its `refiner` and `combined`).

`PythonSlicer` is a launcher that runs Python as its child, so Cancel ends the whole process
tree (processTree.py). The child runs in UTF-8 mode (Slicer sets PYTHONUTF8 only from 5.12 on;
before that, Windows' code page made a path with "Ł" fail), and its output is decoded
incrementally, so a character split across two reads stays whole. No console window flashes on
Windows: QProcess itself starts a console program with CREATE_NO_WINDOW when Slicer has no console
(qprocess_win.cpp), and the synchronous run passes that flag to subprocess (processTree.noConsoleWindow).
"""

import codecs
import logging
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from CephLandmarksLib.progress import ERROR_PREFIX, PROGRESS_PREFIX  # torch-free

from .processTree import killTree, noConsoleWindow


def pythonSlicerExecutable(applicationFilePath="") -> str:
    """Slicer's own Python interpreter: on PATH in Slicer, else beside the application."""
    found = shutil.which("PythonSlicer")
    if found:
        return found
    folder = os.path.dirname(applicationFilePath or sys.executable)
    return os.path.join(folder, "PythonSlicer.exe" if os.name == "nt" else "PythonSlicer")


def cliCommand(python, command, *args) -> list:
    """[python, -m, CephLandmarksLib, command, args...]: the CLI, as `ceph-landmarks command args...`."""
    return [python, "-m", "CephLandmarksLib", command, *[str(a) for a in args]]


def displayCommand(commandLine) -> str:
    """The command line as the user would type it: `ceph-landmarks train --dataset ...`."""
    return "ceph-landmarks " + shlex.join(commandLine[3:])


def processEnvironment(libraryFolder) -> dict:
    """Variables for the child: the folder holding CephLandmarksLib first on PYTHONPATH, unbuffered
    output, UTF-8 mode (paths and output in UTF-8 whatever the system code page)."""
    path = os.pathsep.join(p for p in (str(libraryFolder), os.environ.get("PYTHONPATH", "")) if p)
    return {"PYTHONPATH": path, "PYTHONUNBUFFERED": "1", "PYTHONUTF8": "1"}


def progressFromLine(line):
    """Fraction done (0-1) from a '[progress] F stage' line (every command Slicer runs passes --progress;
    tqdm's bars are drawn on a terminal only), else None."""
    if not line.startswith(PROGRESS_PREFIX):
        return None
    try:
        return min(1.0, max(0.0, float(line.split()[1])))
    except (IndexError, ValueError):
        return None


def progressUpdate(line):
    """(fraction, stage) of a '[progress] F stage' line, else None."""
    fraction = progressFromLine(line)
    if fraction is None:
        return None
    parts = line.split(None, 2)
    return fraction, parts[2] if len(parts) > 2 else ""


def failureMessage(exitCode, crashed, lines) -> str:
    """One line for the user: the CLI's own error line, else the last line it printed."""
    errors = [line[len(ERROR_PREFIX):].strip() for line in lines if line.startswith(ERROR_PREFIX)]
    if errors:
        return errors[-1]
    printed = [line for line in lines if line.strip() and not line.startswith(PROGRESS_PREFIX)]
    what = "stopped unexpectedly" if crashed else f"failed (exit code {exitCode})"
    return f"the process {what}" + (f": {printed[-1].strip()}" if printed else "")


class BackgroundProcess:
    """One CLI run in a qt.QProcess: onLine(text) per output line, onFinished(exitCode, crashed) once."""

    def __init__(self, commandLine, environment, onLine, onFinished):
        import qt

        self.commandLine = list(commandLine)
        self._onLine, self._onFinished = onLine, onFinished
        self._pending = ""
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._done = self._killed = False
        self._process = qt.QProcess()
        self._process.setProcessChannelMode(qt.QProcess.MergedChannels)
        env = qt.QProcessEnvironment.systemEnvironment()
        for key, value in environment.items():
            env.insert(key, value)
        self._process.setProcessEnvironment(env)
        self._process.connect("readyReadStandardOutput()", self._readOutput)
        self._process.connect("finished(int,QProcess::ExitStatus)", self._finished)
        self._process.connect("errorOccurred(QProcess::ProcessError)", self._error)

    def start(self) -> None:
        self._process.start(self.commandLine[0], self.commandLine[1:])

    @property
    def running(self) -> bool:
        return not self._done

    def kill(self) -> None:
        """Stop the process and every process it started, now; onFinished still comes, with crashed=True."""
        import qt

        if self._process.state() != qt.QProcess.NotRunning:
            self._killed = True
            killTree(self._processId())
            self._process.kill()
            self._process.waitForFinished(3000)

    def _processId(self) -> int:
        """The launcher's process id (0 when unknown: then only the launcher can be killed)."""
        try:
            return int(self._process.processId())
        except (AttributeError, TypeError):  # a PythonQt without QProcess.processId (Qt 5.3+)
            logging.warning("CephLandmarks: no process id; only the launcher is stopped")
            return 0

    def _readOutput(self, final=False) -> None:
        text = self._pending + self._decoder.decode(self._process.readAllStandardOutput().data(), final)
        lines = text.replace("\r", "\n").split("\n")
        self._pending = lines.pop()
        for line in lines:
            if line.strip():
                self._onLine(line)

    def _finished(self, exitCode, exitStatus) -> None:
        import qt

        if self._done:
            return
        self._readOutput(final=True)
        if self._pending.strip():
            self._onLine(self._pending)
        self._pending = ""
        self._done = True
        self._onFinished(int(exitCode), self._killed or exitStatus != qt.QProcess.NormalExit)

    def _error(self, error) -> None:
        import qt

        if error == qt.QProcess.FailedToStart and not self._done:
            self._done = True
            self._onLine(f"{ERROR_PREFIX} could not start {self.commandLine[0]}")
            self._onFinished(-1, True)


def cliProcess(commandLine, libraryFolder, onLine=None, onFinished=None) -> BackgroundProcess:
    """A BackgroundProcess running commandLine with libraryFolder first on its PYTHONPATH (not started);
    without onLine, its output goes to the log."""
    return BackgroundProcess(commandLine, processEnvironment(libraryFolder), onLine or logging.info,
                             onFinished or (lambda code, crashed: None))


class ProcessJob:
    """A CLI command (`commandLine`, `environment`, set by the subclass) in a background process:
    its lines kept for the subclass' finish(exitCode, crashed), progress lines passed on as
    onProgress(fraction, stage), onDone(*finish(...)) called once on the main thread; Cancel kills
    its process tree."""

    def __init__(self):
        self.cancelled = False
        self._lines = []
        self._process = None

    def start(self, onProgress, onDone) -> None:
        def onLine(line):
            self._lines.append(line)
            update = progressUpdate(line)
            if update is not None:
                onProgress(*update)

        self._process = BackgroundProcess(self.commandLine, self.environment, onLine,
                                          lambda code, crashed: onDone(*self.finish(code, crashed)))
        self._process.start()

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.running

    def cancel(self) -> None:
        self.cancelled = True
        if self._process is not None:
            self._process.kill()


class DetectionJob(ProcessJob):
    """One detection: radiograph file in, `detect --heatmaps` in a process, Detection out.

    onProgress(fraction, stage); onDone(detection, errorMessage, cancelled) is called once,
    on the main thread, after the temporary folder is gone.
    """

    def __init__(self, radiograph, modelPath, python, libraryFolder, device="cpu", refine=()):
        """refine: the `--refine` arguments (secondStage.refineArguments); none: the library's default."""
        from CephLandmarksLib.imaging.images import RADIOGRAPH_SUFFIX, save_radiograph

        super().__init__()
        self.folder = Path(tempfile.mkdtemp(prefix="CephLandmarks-detect-"))
        try:
            inputPath = self.folder / f"input{RADIOGRAPH_SUFFIX}"
            save_radiograph(inputPath, radiograph)
        except BaseException:
            self._removeFolder()
            raise
        self.commandLine = cliCommand(python, "detect", inputPath, "--model", modelPath, "--out-dir", self.folder,
                                      "--device", device, *refine, "--heatmaps", "--no-overlay", "--progress")
        self.environment = processEnvironment(libraryFolder)

    def run(self):
        """Synchronous (scripts and the self-test): (detection, errorMessage, cancelled)."""
        env = dict(os.environ, **self.environment)
        result = subprocess.run(self.commandLine, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                **noConsoleWindow())
        self._lines = result.stdout.decode("utf-8", "replace").splitlines()
        return self.finish(result.returncode, result.returncode < 0)

    def finish(self, exitCode, crashed):
        """(detection or None, error message or None, cancelled); removes the temporary folder."""
        try:
            if self.cancelled:
                return None, None, True
            if exitCode != 0:
                return None, failureMessage(exitCode, crashed, self._lines), False
            from CephLandmarksLib.detection.result import load_detection
            from CephLandmarksLib.errors import CephError

            try:
                return load_detection(self.folder / "input.json"), None, False
            except CephError as e:
                return None, str(e), False
        finally:
            self._removeFolder()

    def _removeFolder(self) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)
