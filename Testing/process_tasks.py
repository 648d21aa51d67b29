"""Module-level tasks for the worker-process tests (outputs/processes.py): spawn pickles a worker's
functions by name, so they cannot live inside a test."""

import os
import time

import numpy as np

from CephLandmarksLib.errors import CephError


def init(tag):
    return {"tag": tag, "pid": os.getpid()}


def init_fails(message):
    raise CephError(message)


def square(state, i, stage):
    """i * i; CephError on every 7th item; items finish out of order (the odd ones sleep)."""
    stage(f"working on {i}")
    if i % 7 == 3:
        raise CephError(f"bad item {i}")
    time.sleep(0.02 * (i % 2))
    return (state["tag"], i * i)


def crash_at_5(state, i, stage):
    if i == 5:
        raise OSError(28, "No space left on device")
    return i


def die_at_2(state, i, stage):
    if i == 2:
        os._exit(9)
    return i


def results_of_64kb(state, k, stage):
    """A 64 kB result, every page touched; item 0 takes 4 s, time enough for the other worker to do
    all the others if it were let run ahead."""
    if k == 0:
        time.sleep(4.0)
    return k, np.full(16 * 1024, k, np.float32)


def slow_write(state, item, stage):
    """Writes `item` (a path) whole-or-nothing, slowly: the run is stopped while it writes."""
    from CephLandmarksLib.files import write_group

    def write(tmp):
        with open(tmp, "w") as f:
            f.write("partial")
            f.flush()
            stage("writing")
            for _ in range(300):  # 30 s of work in short calls, as a real write is (a signal that lands
                time.sleep(0.1)  # just before one long C call is only seen when that call returns)

    return [str(p) for p in write_group([(item, write)])]
