"""Detect through one long-lived `ceph-landmarks worker` process instead of a new process per press.

A new process per Detect imports torch and loads the model every time (seconds) for a network that
runs in a fraction of one.  The first Detect starts `PythonSlicer -m CephLandmarksLib worker`
(CephLandmarksLib/worker/serve.py); later ones send it one job line each (worker/protocol.py) and read
the same `[progress]` and error lines as before, then one `[result]` line.  The job is the same
`detect` command line DetectionJob would run (process.py), so the files and their reading are
the same; the worker runs it in the command line's own code.

- The worker is reused while Slicer's Python, the model file and the device stay the same; another
  model or device starts a new one (the old one is killed).
- Cancel kills the worker's whole process tree (BackgroundProcess.kill); the next Detect starts a
  new worker.  A worker that ended on its own (its idle time passed) is started again.
- It exits when Slicer exits (its stdin closes) or after DEFAULT_IDLE_TIMEOUT_S without a job.
- The synchronous run (scripts, the self-test) stays a one-off `detect` process.

Imported when Detect is pressed; no torch (parses under Python 3.9).
"""

from CephLandmarksLib.worker.protocol import DEFAULT_IDLE_TIMEOUT_S, job_line, parse_result

from .process import BackgroundProcess, cliCommand, progressUpdate


class WorkerProcess(BackgroundProcess):
    """A BackgroundProcess that is sent lines on its stdin."""

    def send(self, text) -> bool:
        """Write a line to the worker (PythonQt passes the bytes as the QByteArray); False if it is gone."""
        return self.running and self._process.write(text.encode("utf-8")) == len(text.encode("utf-8"))


def _option(commandLine, name):
    return commandLine[commandLine.index(name) + 1] if name in commandLine else None


class DetectionWorker:
    """The worker process and whose job it is running; at most one job at a time."""

    def __init__(self, idleTimeoutS=DEFAULT_IDLE_TIMEOUT_S):
        self.idleTimeoutS = idleTimeoutS
        self.process = None
        self._key = None
        self._handlers = None  # (onLine, onExit) of the job being run

    @staticmethod
    def keyOf(job):
        """What a worker is bound to: Slicer's Python, the library on its path, the model file and the device."""
        return (job.commandLine[0], job.environment.get("PYTHONPATH", ""), _option(job.commandLine, "--model"),
                _option(job.commandLine, "--device"))

    def submit(self, job, onLine, onExit) -> None:
        """Run `job` (a DetectionJob) in the worker, starting one when none fits; onLine(line) for each
        line until the result line, onExit(exitCode, crashed) if the worker ends before it."""
        key = self.keyOf(job)
        if self.process is None or not self.process.running or key != self._key:
            self.stop()
            self._start(job, key)
        self._handlers = (onLine, onExit)
        if not self.process.send(job_line(job.commandLine[4:])):  # after "python -m CephLandmarksLib detect"
            self._handlers = None
            onExit(1, True)

    def release(self) -> None:
        """The job is done (its result line came): later lines and the worker's end are no longer its."""
        self._handlers = None

    def _start(self, job, key) -> None:
        commandLine = cliCommand(job.commandLine[0], "worker", "--idle-timeout", f"{self.idleTimeoutS:g}")
        process = None

        def onLine(line):
            if self.process is process and self._handlers:
                self._handlers[0](line)

        def onFinished(exitCode, crashed):
            if self.process is not process:
                return  # an earlier worker, already replaced
            self.process, handlers, self._handlers = None, self._handlers, None
            if handlers:
                handlers[1](exitCode, crashed)

        process = WorkerProcess(commandLine, job.environment, onLine, onFinished)
        self.process, self._key = process, key
        process.start()

    def stop(self) -> None:
        """Kill the worker and its process tree (a job it was running ends as crashed)."""
        if self.process is not None:
            self.process.kill()


_WORKER = DetectionWorker()


def stopWorker() -> None:
    """Kill the worker, if one runs (module clean-up)."""
    _WORKER.stop()


class WorkerDetectionJob:
    """A DetectionJob run by the worker: the same start/run/cancel/running/folder and onDone."""

    def __init__(self, job, worker=None):
        self.job = job
        self.worker = worker or _WORKER
        self._process = None
        self._done = False
        self._retried = False

    @property
    def folder(self):
        return self.job.folder

    @property
    def cancelled(self) -> bool:
        return self.job.cancelled

    @property
    def running(self) -> bool:
        return self._process is not None and not self._done

    def start(self, onProgress, onDone) -> None:
        def onLine(line):
            result = parse_result(line)
            if result is not None:
                self._finish(onDone, result["exit_code"], False)
                return
            self.job._lines.append(line)
            update = progressUpdate(line)
            if update is not None:
                onProgress(*update)

        def onExit(exitCode, crashed):
            if not self.job.cancelled and not crashed and exitCode == 0 and not self._retried:
                self._retried = True  # it reached its idle time as the job arrived: a new worker takes it
                self._submit(onLine, onExit)
                return
            self._finish(onDone, exitCode if exitCode else 1, True)

        self._submit(onLine, onExit)

    def _submit(self, onLine, onExit) -> None:
        self.worker.submit(self.job, onLine, onExit)
        self._process = self.worker.process

    def _finish(self, onDone, exitCode, crashed) -> None:
        if self._done:
            return
        self._done = True
        self.worker.release()
        onDone(*self.job.finish(exitCode, crashed))

    def run(self):
        """Synchronous (scripts, the self-test): a one-off `detect` process, as before."""
        return self.job.run()

    def cancel(self) -> None:
        self.job.cancelled = True
        if self.running:
            self.worker.stop()


def viaWorker(job):
    """The DetectionJob `job`, run by the shared worker."""
    return WorkerDetectionJob(job)
