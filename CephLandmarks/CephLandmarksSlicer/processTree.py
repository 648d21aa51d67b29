"""Ending a process together with every process it started.

`PythonSlicer` is a CTKAppLauncher: it sets up the environment and runs `python-real` as its
CHILD process, so `QProcess.kill()` ends the launcher only, and Python goes on using CPU, GPU
and memory (and may still write its output after a cancel). Standard library only (Slicer
ships no psutil): on Windows `taskkill /T` ends the tree; elsewhere the tree is read from
/proc (Linux) or `ps` (macOS), frozen with SIGSTOP so it cannot grow while it is read, and
killed.
"""

import os
import signal
import subprocess
from pathlib import Path

_FREEZE_ROUNDS = 5


def noConsoleWindow() -> dict:
    """subprocess keyword arguments that start a console program without a console window (Windows)."""
    return {"creationflags": subprocess.CREATE_NO_WINDOW} if os.name == "nt" else {}


def parentIds() -> dict:
    """{pid: parent pid} of every process the user can see: /proc on Linux, else `ps` (macOS)."""
    return parentIdsFromProc() if Path("/proc/self/stat").is_file() else parentIdsFromPs()


def parentIdsFromProc() -> dict:
    table = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                # "pid (comm) state ppid ...": comm may hold spaces and parentheses.
                table[int(entry.name)] = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
    return table


def parentIdsFromPs() -> dict:
    result = subprocess.run(["ps", "-A", "-o", "pid=", "-o", "ppid="], capture_output=True, text=True,
                            check=False)
    table = {}
    for line in result.stdout.splitlines():
        fields = line.split()
        if len(fields) == 2 and fields[0].isdigit() and fields[1].isdigit():
            table[int(fields[0])] = int(fields[1])
    return table


def descendants(pid, table) -> list:
    """Every process below pid in the {pid: parent} table, parents before their children."""
    children = {}
    for child, parent in table.items():
        children.setdefault(parent, []).append(child)
    found, frontier = [], [pid]
    while frontier:
        below = [c for p in frontier for c in children.get(p, ()) if c != pid and c not in found]
        found += below
        frontier = below
    return found


def _signal(pids, signum) -> None:
    for pid in pids:
        try:
            os.kill(pid, signum)
        except (ProcessLookupError, PermissionError):
            pass


def killDescendants(pid) -> list:
    """Freeze pid and kill everything it started (POSIX); pid itself is left stopped. Returns the pids killed."""
    _signal([pid], signal.SIGSTOP)  # the launcher must not react to its child's death
    frozen = []
    for _ in range(_FREEZE_ROUNDS):  # a process may start another between the reading and the SIGSTOP
        fresh = [p for p in descendants(pid, parentIds()) if p not in frozen]
        if not fresh:
            break
        _signal(fresh, signal.SIGSTOP)
        frozen += fresh
    _signal(frozen, signal.SIGKILL)
    return frozen


def killTree(pid) -> None:
    """End pid and every process it started, now. pid stays its parent's to reap (QProcess's)."""
    if pid <= 0:
        return
    if os.name == "nt":
        subprocess.run(["taskkill", "/F", "/T", "/PID", str(pid)], stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL, check=False, **noConsoleWindow())
    else:
        killDescendants(pid)
        _signal([pid], signal.SIGKILL)
