"""The module's background process (CephLandmarksSlicer/process.py) under the launcher-like PythonSlicer:
Cancel ends Python too, the child runs in UTF-8 mode, and output split mid-character stays whole.

Skips when ../shared/slicer-5.12, slicer-core or cmake is missing (CI has all three)."""

import importlib.util
import os
import shutil
import sys
import textwrap
from pathlib import Path

import pytest

from slicer_harness import build, missing_reason
from slicer_harness.process import pid_running

pytestmark = pytest.mark.skipif(bool(missing_reason() or build.skip_reason()),
                                reason=str(missing_reason() or build.skip_reason()))


def backgroundProcess(harness, code, environment=None):
    """A CephLandmarksSlicer BackgroundProcess running `PythonSlicer -c code`; returns it, its lines, its end."""
    from CephLandmarksSlicer.process import BackgroundProcess

    lines, finished = [], []
    process = BackgroundProcess([str(harness.python_slicer), "-c", textwrap.dedent(code)], environment or {},
                                lines.append, lambda code, crashed: finished.append((code, crashed)))
    return process, lines, finished


def test_python_slicer_runs_python_as_its_child(harness):
    """As CTKAppLauncher does: the launcher is QProcess's process, Python is its child."""
    import qt

    process = qt.QProcess()
    finished = []
    process.connect("finished(int,QProcess::ExitStatus)", lambda code, status: finished.append(code))
    process.start("PythonSlicer", ["-c", "import os; print(os.getpid(), os.getppid())"])
    assert process.waitForStarted()
    launcher = process.processId()
    harness.process_events(until=lambda: finished, timeout_s=30)
    pid, ppid = map(int, process.readAllStandardOutput().data().split())
    assert finished == [0] and ppid == launcher and pid != launcher


def test_cancel_ends_python_and_what_it_started(harness):
    """kill() ends the launcher, Python under it and Python's own child (a DataLoader worker, say)."""
    process, lines, finished = backgroundProcess(harness, """
        import os, subprocess, sys, time
        worker = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
        print(os.getpid(), worker.pid, flush=True)
        time.sleep(60)
    """)
    process.start()
    pids = []
    try:
        harness.process_events(until=lambda: lines, timeout_s=30)
        pids = [int(p) for p in lines[0].split()]
        assert all(pid_running(pid) for pid in pids)
        process.kill()
        harness.process_events(until=lambda: finished, timeout_s=30)
        assert finished[0][1] is True and not process.running
        still = [pid for pid in pids if pid_running(pid)]
        assert still == [], f"processes left running after kill(): {still}"
    finally:
        for pid in pids:
            if pid_running(pid):
                os.kill(pid, 9)


def test_the_child_runs_in_utf8_mode(harness):
    """Slicer 5.10 does not set PYTHONUTF8: the module does, or Windows' code page breaks on 'Ł'."""
    from CephLandmarksSlicer.process import processEnvironment

    environment = processEnvironment(Path("/somewhere"))
    assert environment["PYTHONUTF8"] == "1"
    process, lines, finished = backgroundProcess(harness, "import sys; print(sys.flags.utf8_mode, "
                                                 "sys.stdout.encoding)", environment)
    process.start()
    harness.process_events(until=lambda: finished, timeout_s=30)
    assert finished == [(0, False)] and lines == ["1 utf-8"]


def test_a_character_split_across_reads_stays_whole(harness):
    """'Ł' is two bytes in UTF-8; written with a pause between them, they arrive in two readyRead chunks."""
    process, lines, finished = backgroundProcess(harness, r"""
        import sys, time
        sys.stdout.buffer.write(b"path: \xc5"); sys.stdout.buffer.flush()
        time.sleep(0.5)
        sys.stdout.buffer.write(b"\x81ukasz\n"); sys.stdout.buffer.flush()
    """)
    chunks = []
    original = process._process.readAllStandardOutput

    def counted():
        data = original()
        chunks.append(data.data())
        return data

    process._process.readAllStandardOutput = counted
    process.start()
    harness.process_events(until=lambda: finished, timeout_s=30)
    assert b"\xc5" in [c[-1:] for c in chunks], chunks  # the split really happened
    assert lines == ["path: \u0141ukasz"]


def test_a_trailing_partial_character_is_replaced_not_lost(harness):
    """At the end of the output, an incomplete character is shown as U+FFFD, and nothing after it is lost."""
    process, lines, finished = backgroundProcess(harness, r"""
        import sys
        sys.stdout.buffer.write(b"done \xc5"); sys.stdout.buffer.flush()
    """)
    process.start()
    harness.process_events(until=lambda: finished, timeout_s=30)
    assert lines == ["done \ufffd"]


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX process table")
def loadProcessTree():
    """processTree.py from the source file (it imports nothing of Slicer's), leaving sys.modules alone."""
    source = Path(__file__).resolve().parents[1] / "CephLandmarks" / "CephLandmarksSlicer" / "processTree.py"
    spec = importlib.util.spec_from_file_location("processTreeUnderTest", source)
    processTree = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(processTree)
    return processTree


def test_descendants_reads_the_process_table():
    processTree = loadProcessTree()
    table = processTree.parentIds()
    assert table[os.getpid()] == os.getppid()
    assert processTree.descendants(1, {2: 1, 3: 2, 4: 3, 5: 9}) == [2, 3, 4]
    if shutil.which("ps"):  # the macOS way, where there is no /proc
        assert processTree.parentIdsFromPs()[os.getpid()] == os.getppid()


def test_windows_ends_the_tree_with_taskkill(monkeypatch):
    """On Windows: `taskkill /F /T /PID launcher`, without a console window (checked here by its call)."""
    processTree = loadProcessTree()
    calls = []
    monkeypatch.setattr(processTree.os, "name", "nt")
    monkeypatch.setattr(processTree.subprocess, "CREATE_NO_WINDOW", 0x08000000, raising=False)
    monkeypatch.setattr(processTree.subprocess, "run", lambda *args, **kwargs: calls.append((args, kwargs)))
    processTree.killTree(4321)
    assert [a[0] for a, _ in calls] == [["taskkill", "/F", "/T", "/PID", "4321"]]
    assert calls[0][1]["creationflags"] == 0x08000000
