"""QTimer, QProcess, QByteArray and the event loop that drives them (stand-ins for QtCore under PythonQt).

Rules enforced:

- Timers fire and QProcess signals are emitted only from the event loop (``process_events``), on the
  main thread, in due order. A background thread only reads a process's output into a buffer.
- QProcess declares ``finished(int)`` before ``finished(int,QProcess::ExitStatus)`` (Qt 5.15), emits
  both, and a killed process ends with CrashExit (after ``errorOccurred(Crashed)``). A program that
  cannot start gives ``errorOccurred(FailedToStart)`` and no ``finished``.
- QByteArray has no buffer protocol and no ``__bytes__``: ``bytes(qbytearray)`` raises TypeError; use
  ``.data()``.
- A QTimer or QProcess that Python no longer references is deleted, as PythonQt deletes an object it
  owns: the timer stops, the process is killed ("Destroyed while process is still running").
- ``kill()`` ends the started program only, as Qt's does: a child it started (Python under the
  ``PythonSlicer`` launcher stand-in) keeps running. Only the harness's teardown ends whole trees, so that
  no test leaves a process behind.
"""

import inspect
import os
import shlex
import shutil
import signal
import subprocess
import threading
import time
import weakref
from pathlib import Path

from . import core
from .core import QObject, QtProperty, Signal, emit


def descendant_pids(pid):
    """Processes below pid (Linux /proc; elsewhere none are found)."""
    children = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            ppid = int(stat.read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(ppid, []).append(int(stat.parent.name))
    found, frontier = [], [pid]
    while frontier:
        frontier = [c for p in frontier for c in children.get(p, ())]
        found += frontier
    return found


def pid_running(pid):
    """True while pid runs; a zombie (dead, not yet reaped) counts as gone."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except (OSError, IndexError):
        pass
    if Path("/proc/self").is_dir():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def _kill_tree(popen):
    """Teardown: the program and everything it started."""
    if popen.poll() is not None:
        return
    for pid in descendant_pids(popen.pid):
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass
    popen.kill()


class QByteArray:
    def __init__(self, data=b""):
        self._data = data.encode("utf-8") if isinstance(data, str) else bytes(data)

    def data(self):
        return self._data

    def size(self):
        return len(self._data)

    length = count = size

    def isEmpty(self):
        return not self._data

    def __len__(self):
        return len(self._data)

    def __str__(self):
        return self._data.decode("utf-8", "replace")

    def __eq__(self, other):
        return isinstance(other, QByteArray) and other._data == self._data

    def __repr__(self):
        return f"QByteArray({self._data!r})"


class _SingleShot(QtProperty):
    """QTimer.singleShot: the bool property on an instance, the static function on the class."""

    def __get__(self, obj, objtype=None):
        return QTimer._single_shot if obj is None else obj._single


class QTimer(QObject):
    timeout = Signal("timeout()")

    def __init__(self, parent=None):
        super().__init__(parent)
        self._interval, self._single, self._active, self._due, self._order = 0, False, False, 0.0, 0

    interval = QtProperty(lambda self: self._interval, lambda self, v: self.setInterval(v))
    singleShot = _SingleShot(None, lambda self, v: self.setSingleShot(v))
    active = QtProperty(lambda self: self._active)

    def setInterval(self, msec):
        self._interval = int(msec)

    def setSingleShot(self, single):
        self._single = bool(single)

    def isSingleShot(self):
        return self._single

    def isActive(self):
        return self._active

    def remainingTime(self):
        return max(0, int((self._due - time.monotonic()) * 1000)) if self._active else -1

    def start(self, msec=None):
        if msec is not None:
            self.setInterval(msec)
        core.state.sequence += 1
        self._order = core.state.sequence
        self._due = time.monotonic() + self._interval / 1000.0
        self._active = True
        if not any(r() is self for r in core.state.timers):
            core.state.timers.append(weakref.ref(self))

    def stop(self):
        self._active = False

    @staticmethod
    def _single_shot(msec, *args):
        if len(args) != 1 or not callable(args[0]):
            raise TypeError("the harness supports QTimer.singleShot(msec, callable) only")
        timer = QTimer()
        timer.setSingleShot(True)
        timer.connect("timeout()", args[0])
        core.state.kept_timers.append(timer)
        timer.start(msec)


class QProcessEnvironment:
    def __init__(self, other=None):
        self._env = dict(other._env) if other is not None else {}

    @staticmethod
    def systemEnvironment():
        env = QProcessEnvironment()
        env._env = dict(os.environ)
        return env

    def insert(self, name, value):
        if not isinstance(name, str) or not isinstance(value, str):
            raise TypeError("QProcessEnvironment.insert takes two str (QString)")
        self._env[name] = value

    def remove(self, name):
        self._env.pop(name, None)

    def value(self, name, defaultValue=""):
        return self._env.get(name, defaultValue)

    def contains(self, name):
        return name in self._env

    def keys(self):
        return list(self._env)

    def isEmpty(self):
        return not self._env

    def clear(self):
        self._env.clear()

    def toStringList(self):
        return [f"{k}={v}" for k, v in self._env.items()]


class _Pipe:
    """One output channel: a reader thread fills the buffer; the event loop announces new data."""

    def __init__(self, stream):
        self.lock, self.buffer, self.fresh, self.eof = threading.Lock(), bytearray(), False, False
        self.thread = threading.Thread(target=self._read, args=(stream,), daemon=True, name="QProcess-reader")
        self.thread.start()

    def _read(self, stream):
        fd = stream.fileno()
        while True:
            try:
                chunk = os.read(fd, 65536)
            except OSError:
                chunk = b""
            if not chunk:
                break
            with self.lock:
                self.buffer += chunk
                self.fresh = True
        stream.close()
        with self.lock:
            self.eof = True

    def take_fresh(self):
        with self.lock:
            fresh, self.fresh = self.fresh, False
            return fresh

    def read_all(self):
        with self.lock:
            data = bytes(self.buffer)
            self.buffer.clear()
            return data


class QProcess(QObject):
    NotRunning, Starting, Running = 0, 1, 2
    NormalExit, CrashExit = 0, 1
    FailedToStart, Crashed, Timedout, ReadError, WriteError, UnknownError = 0, 1, 2, 3, 4, 5
    SeparateChannels, MergedChannels, ForwardedChannels = 0, 1, 2
    StandardOutput, StandardError = 0, 1

    started = Signal("started()")
    finished = Signal("finished(int)", "finished(int,QProcess::ExitStatus)")
    errorOccurred = Signal("errorOccurred(QProcess::ProcessError)")
    stateChanged = Signal("stateChanged(QProcess::ProcessState)")
    readyReadStandardOutput = Signal("readyReadStandardOutput()")
    readyReadStandardError = Signal("readyReadStandardError()")
    readyRead = Signal("readyRead()")
    readChannelFinished = Signal("readChannelFinished()")

    def __init__(self, parent=None):
        super().__init__(parent)
        self._program, self._arguments, self._cwd, self._env = "", [], "", None
        self._mode, self._state, self._error = QProcess.SeparateChannels, QProcess.NotRunning, QProcess.UnknownError
        self._exit_code, self._exit_status = 0, QProcess.NormalExit
        self._popen, self._pipes, self._pending, self._exited_at = None, {}, None, None

    def __del__(self):
        popen = getattr(self, "_popen", None)
        if popen is not None and popen.poll() is None:
            print(f"QProcess: Destroyed while process ({self._program!r}) is still running.", flush=True)
            _kill_tree(popen)

    # configuration
    def setProgram(self, program):
        self._program = program

    def program(self):
        return self._program

    def setArguments(self, arguments):
        self._arguments = list(arguments)

    def arguments(self):
        return list(self._arguments)

    def setWorkingDirectory(self, path):
        self._cwd = path

    def workingDirectory(self):
        return self._cwd

    def setProcessEnvironment(self, environment):
        if not isinstance(environment, QProcessEnvironment):
            raise TypeError("setProcessEnvironment takes a QProcessEnvironment")
        self._env = QProcessEnvironment(environment)

    def processEnvironment(self):
        return QProcessEnvironment(self._env) if self._env is not None else QProcessEnvironment()

    def setProcessChannelMode(self, mode):
        self._mode = mode

    def processChannelMode(self):
        return self._mode

    # state
    def state(self):
        return self._state

    def error(self):
        return self._error

    def exitCode(self):
        return self._exit_code

    def exitStatus(self):
        return self._exit_status

    def processId(self):
        return self._popen.pid if self._popen is not None and self._state != QProcess.NotRunning else 0

    def _set_state(self, value):
        if value != self._state:
            self._state = value
            emit(self, "stateChanged(QProcess::ProcessState)", value)

    # running
    def start(self, program=None, arguments=None, mode=None):
        if self._state != QProcess.NotRunning:
            print("QProcess::start: Process is already running", flush=True)
            return
        if program is None:
            program, arguments = self._program, self._arguments
        elif arguments is None:  # Qt 5 start(command): the command line is split
            program, *arguments = shlex.split(program)
        if not isinstance(program, str) or not all(isinstance(a, str) for a in arguments):
            raise TypeError("QProcess.start takes a str program and a list of str arguments")
        self._program, self._arguments = program, list(arguments)
        self._exit_code, self._exit_status, self._exited_at = 0, QProcess.NormalExit, None
        self._set_state(QProcess.Starting)
        core.state.processes.append(weakref.ref(self))
        executable = program if os.sep in program else shutil.which(program)  # Qt searches the parent's PATH
        try:
            if executable is None:
                raise FileNotFoundError(program)
            self._popen = subprocess.Popen(
                [executable, *self._arguments], stdin=subprocess.PIPE,
                stdout=None if self._mode == QProcess.ForwardedChannels else subprocess.PIPE,
                stderr={QProcess.MergedChannels: subprocess.STDOUT, QProcess.ForwardedChannels: None}.get(
                    self._mode, subprocess.PIPE),
                cwd=self._cwd or None, env=self._env._env if self._env is not None else None)
        except OSError:
            self._popen, self._pending = None, "failed"
            return
        self._pipes = {}
        if self._popen.stdout is not None:
            self._pipes[QProcess.StandardOutput] = _Pipe(self._popen.stdout)
        if self._popen.stderr is not None:
            self._pipes[QProcess.StandardError] = _Pipe(self._popen.stderr)
        self._pending = "started"

    def kill(self):
        if self._popen is not None and self._popen.poll() is None:
            self._popen.kill()

    def write(self, data):
        """QIODevice::write(const QByteArray&) to the child's stdin: bytes or a QByteArray (PythonQt passes
        Python bytes as a QByteArray); -1 when not running (Qt's answer), as a str is refused here."""
        if isinstance(data, QByteArray):
            data = data.data()
        if not isinstance(data, bytes):
            raise TypeError("QProcess.write takes bytes or a QByteArray")
        if self._popen is None or self._popen.poll() is not None or self._popen.stdin is None:
            return -1
        try:
            self._popen.stdin.write(data)
            self._popen.stdin.flush()
        except (BrokenPipeError, ValueError):
            return -1
        return len(data)

    def closeWriteChannel(self):
        if self._popen is not None and self._popen.stdin is not None and not self._popen.stdin.closed:
            try:
                self._popen.stdin.close()
            except BrokenPipeError:
                pass

    def terminate(self):
        if self._popen is not None and self._popen.poll() is None:
            self._popen.terminate()

    def readAllStandardOutput(self):
        pipe = self._pipes.get(QProcess.StandardOutput)
        return QByteArray(pipe.read_all() if pipe else b"")

    def readAllStandardError(self):
        pipe = self._pipes.get(QProcess.StandardError)
        return QByteArray(pipe.read_all() if pipe else b"")

    readAll = readAllStandardOutput

    def waitForStarted(self, msecs=30000):
        self._deliver_start()
        return self._state == QProcess.Running

    def waitForFinished(self, msecs=30000):
        if self._state == QProcess.NotRunning:
            return False
        self._deliver_start()
        if self._popen is None:
            return False
        try:
            self._popen.wait(None if msecs < 0 else msecs / 1000.0)
        except subprocess.TimeoutExpired:
            return False
        for pipe in self._pipes.values():
            pipe.thread.join(1.0)
        self._exited_at = time.monotonic() - 1.0
        self._pump()
        return True

    # event-loop side
    def _deliver_start(self):
        pending, self._pending = self._pending, None
        if pending == "failed":
            self._error = QProcess.FailedToStart
            self._set_state(QProcess.NotRunning)
            emit(self, "errorOccurred(QProcess::ProcessError)", QProcess.FailedToStart)
        elif pending == "started":
            self._set_state(QProcess.Running)
            emit(self, "started()")

    def _pump(self):
        """Deliver what happened since the last pass; True while more is to come."""
        self._deliver_start()
        if self._state != QProcess.Running:
            return False
        for channel, pipe in self._pipes.items():
            if pipe.take_fresh():
                if channel == QProcess.StandardOutput:
                    emit(self, "readyReadStandardOutput()")
                    emit(self, "readyRead()")
                else:
                    emit(self, "readyReadStandardError()")
        if self._popen.poll() is None:
            return True
        if self._exited_at is None:
            self._exited_at = time.monotonic()
        # Qt reads what is left when the child dies; give the readers a moment (a grandchild may hold the pipe)
        if not all(p.eof for p in self._pipes.values()) and time.monotonic() - self._exited_at < 0.5:
            return True
        for channel, pipe in self._pipes.items():
            if pipe.take_fresh():
                emit(self, "readyReadStandardOutput()" if channel == QProcess.StandardOutput
                     else "readyReadStandardError()")
        code = self._popen.returncode
        self._exit_code, self._exit_status = (code, QProcess.NormalExit) if code >= 0 else (-code, QProcess.CrashExit)
        if self._exit_status == QProcess.CrashExit:
            self._error = QProcess.Crashed
            emit(self, "errorOccurred(QProcess::ProcessError)", QProcess.Crashed)
        self._set_state(QProcess.NotRunning)
        emit(self, "readChannelFinished()")
        emit(self, "finished(int)", self._exit_code)
        emit(self, "finished(int,QProcess::ExitStatus)", self._exit_code, self._exit_status)
        return False


def _live(refs):
    alive = [r for r in refs if r() is not None]
    refs[:] = alive
    return [r() for r in alive]


def process_events_once():
    """One pass of the event loop: due timers in due order, then process output and exits."""
    now = time.monotonic()
    for timer in sorted((t for t in _live(core.state.timers) if t._active and t._due <= now),
                        key=lambda t: (t._due, t._order)):
        if not timer._active or timer._due > now:  # stopped or restarted by an earlier slot
            continue
        if timer._single:
            timer._active = False
        else:
            timer._due = now + timer._interval / 1000.0
        emit(timer, "timeout()")
    core.state.timers[:] = [r for r in core.state.timers if r() is not None and r()._active]
    core.state.kept_timers[:] = [t for t in core.state.kept_timers if t._active]
    for process in _live(core.state.processes):
        if not process._pump():
            core.state.processes[:] = [r for r in core.state.processes if r() is not process]


def busy():
    """Active timers or processes with something still to deliver."""
    return any(t._active for t in _live(core.state.timers)) or bool(_live(core.state.processes))


def _describe(until):
    try:
        return inspect.getsource(until).strip()
    except (OSError, TypeError):
        return repr(until)


def process_events(until=None, timeout_s=60.0, interval_s=0.01):
    """Run the event loop until until() is true (None: until no timer is active and no process pending).
    Raises TimeoutError naming what was awaited when timeout_s passes first."""
    deadline = time.monotonic() + timeout_s
    while True:
        process_events_once()
        if (not busy()) if until is None else until():
            return
        if time.monotonic() > deadline:
            what = "the event loop to go idle" if until is None else _describe(until)
            raise TimeoutError(f"process_events: still waiting after {timeout_s} s for: {what}")
        time.sleep(interval_s)


def shutdown():
    """Stop every timer and kill every process of the current state (harness teardown)."""
    for timer in _live(core.state.timers):
        timer._active = False
    for process in _live(core.state.processes):
        if process._popen is not None:
            _kill_tree(process._popen)
            try:
                process._popen.wait(5)
            except subprocess.TimeoutExpired:
                pass
    core.state.timers.clear()
    core.state.kept_timers.clear()
    core.state.processes.clear()
