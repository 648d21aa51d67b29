"""Items of a long list done whole in worker processes, each item by one worker, their outcomes taken
in the list's order: what `detect` on many files runs on the CPU (batch.py), so that every core works
on an image of its own, torch, decoding and the overlay alike (threads in one process fight over the
interpreter's lock, and torch's own threads already took the cores).

- Workers are started with the "spawn" method (a fork after torch has started its threads is unsafe),
  run `init(*init_args)` once (torch's import and the model's load: the run's start-up) and then
  `task(state, item, stage)` per item; `stage(text)` tells the parent what the worker is doing.
- Order: outcomes are handed to `on_done(k, value)` / `on_error(k, CephError)` in the items' order,
  whatever order the workers finish in.
- Memory is bounded: at most `window` items are given out and not yet handed on, however many items
  there are (10,000 files hold as much memory as 10).
- A CephError is the item's own failure (the others go on).  Anything else (an unforeseen exception
  in a worker or in the parent, Ctrl-C, SIGTERM, a worker that died) stops the run: every worker is
  told to stop (SIGTERM, which a worker turns into KeyboardInterrupt so that a whole-or-nothing write
  under way removes its temporary files), the parent waits for them, and the exception is raised.
  Ctrl-C on a terminal reaches the workers too and does the same.  A worker takes the signal between
  two calls of Python code: within a forward or a PNG's encoding, when that call returns.
"""

import multiprocessing
import os
import queue
import signal
import time

from ..errors import CephError

MAX_WORKERS = 8  # each holds its own model and torch; beyond this the memory grows for little gain
STOP_WAIT_S = 20.0  # how long a stopping worker may take to clean up before it is killed


def available_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def default_workers(n_items: int) -> int:
    """min(the cores this process may use, MAX_WORKERS, the items)."""
    return max(1, min(available_cores(), MAX_WORKERS, n_items))


class WorkerFailed(CephError):
    """A worker process ended without a word (killed, out of memory): the run stops."""


_SIGNALS = tuple(getattr(signal, n) for n in ("SIGINT", "SIGTERM", "SIGHUP") if hasattr(signal, n))


def _stop_on_signal(signum, frame):
    """A worker's handler of SIGINT, SIGTERM and SIGHUP: the first raises KeyboardInterrupt (a write under
    way removes its temporary files as it unwinds); the next are ignored while that clean-up runs."""
    for s in _SIGNALS:
        signal.signal(s, signal.SIG_IGN)
    raise KeyboardInterrupt(signal.Signals(signum).name)


def _sendable(e: BaseException) -> BaseException:
    """The exception itself when it survives pickling, else a RuntimeError naming it."""
    import pickle

    try:
        pickle.loads(pickle.dumps(e))
        return e
    except Exception:  # noqa: BLE001
        return RuntimeError(f"{type(e).__name__}: {e}")


def _worker(init, init_args, task, tasks, results, parent_pid) -> None:
    """A worker's life: init once, then items until told to stop (None) or the parent is gone.  Anything
    but an item's CephError ends it, told to the parent as "fatal" (without a traceback on stderr)."""
    for s in _SIGNALS:
        signal.signal(s, _stop_on_signal)
    # Started with these signals blocked (_start): the threads started until "ready" (numpy's, torch's,
    # the queue's feeder) keep them blocked, and only this thread takes them once it unblocks them.
    masked = hasattr(signal, "pthread_sigmask")
    k = None
    try:
        try:
            state = init(*init_args)
        except CephError as e:
            results.put(("init-error", None, str(e)))
            return
        results.put(("ready", None, os.getpid()))
        if masked:
            signal.pthread_sigmask(signal.SIG_UNBLOCK, _SIGNALS)
        while True:
            try:
                job = tasks.get(timeout=1.0)
            except queue.Empty:
                if os.getppid() != parent_pid:  # the parent was killed: nobody will read
                    return
                continue
            if job is None:
                return
            k, item = job
            try:
                value = task(state, item, lambda text, k=k: results.put(("stage", k, text)))
            except CephError as e:
                results.put(("error", k, str(e)))
                continue
            results.put(("done", k, value))
            value = None
    except BaseException as e:  # noqa: BLE001  (raised again in the parent)
        try:
            results.put(("fatal", k, _sendable(e)))
        except BaseException:  # noqa: BLE001
            pass
        raise SystemExit(1) from None


def run_in_processes(items, init, init_args, task, on_done, on_error, *, workers: int, window: int | None = None,
                     on_stage=None, on_ready=None) -> None:
    """For each item, value = task(state, item, stage) in a worker (state = init(*init_args), once per
    worker); then on_done(k, value) or on_error(k, CephError) here, in the items' order.
    on_stage(k, text) hears what the workers do as they do it; on_ready(seconds) is told when every
    worker has started (the start-up: interpreter, imports, init).  init, task: module-level functions
    (spawn pickles them by name).  An init's CephError stops the run with that error (a bad model)."""
    items = list(items)
    n = len(items)
    if not n:
        return
    workers = max(1, min(workers, n))
    window = max(window or 2 * workers, workers)
    ctx = multiprocessing.get_context("spawn")
    tasks, results = ctx.Queue(), ctx.Queue()
    procs = [ctx.Process(target=_worker, args=(init, init_args, task, tasks, results, os.getpid()),
                         name=f"ceph-landmarks-worker-{i}", daemon=True) for i in range(workers)]
    started = time.perf_counter()
    try:
        _start(procs)
        ready = 0
        while ready < workers:
            kind, _, value = _next(results, procs)
            if kind == "ready":
                ready += 1
            elif kind == "init-error":
                raise CephError(value)
            elif kind == "fatal":
                raise value
        if on_ready is not None:
            on_ready(time.perf_counter() - started)
        given, nxt, held = 0, 0, {}
        while nxt < n:
            while given < n and given < nxt + window:
                tasks.put((given, items[given]))
                given += 1
            kind, k, value = _next(results, procs)
            if kind == "stage":
                if on_stage is not None:
                    on_stage(k, value)
                continue
            if kind == "fatal":
                raise value
            held[k] = (kind, value)
            while nxt in held:
                kind, value = held.pop(nxt)
                if kind == "done":
                    on_done(nxt, value)
                else:
                    on_error(nxt, CephError(value))
                nxt += 1
        for _ in procs:
            tasks.put(None)
        for p in procs:
            p.join()
    finally:
        _stop(procs)
        for q in (tasks, results):
            q.cancel_join_thread()
            q.close()


def _start(procs) -> None:
    """Start the workers with the stop signals blocked: every thread a worker starts before its main
    thread unblocks them (numpy's, torch's, the queue's) inherits the mask and never takes a stop
    signal, which would then not wake the main thread from a blocking call (a sleep, a long write)."""
    masked = hasattr(signal, "pthread_sigmask")
    if masked:
        previous = signal.pthread_sigmask(signal.SIG_BLOCK, _SIGNALS)
    try:
        for p in procs:
            p.start()
    finally:
        if masked:
            signal.pthread_sigmask(signal.SIG_SETMASK, previous)


def _next(results, procs):
    """The next message from the workers; WorkerFailed when one of them ended without a word."""
    while True:
        try:
            return results.get(timeout=0.5)
        except queue.Empty:
            for p in procs:
                if p.exitcode is not None and p.exitcode != 0:
                    raise WorkerFailed(f"a detection worker process stopped unexpectedly (exit code {p.exitcode}"
                                       f"{', out of memory?' if p.exitcode == -signal.SIGKILL else ''})") from None


def _stop(procs) -> None:
    """Ask every worker still running to stop (SIGTERM: it cleans up its writes), wait, kill the stubborn."""
    for p in procs:
        if p.is_alive():
            try:
                os.kill(p.pid, signal.SIGTERM)
            except (OSError, TypeError):
                pass
    deadline = time.monotonic() + STOP_WAIT_S
    for p in procs:
        if p.pid is None:
            continue
        p.join(max(0.0, deadline - time.monotonic()))
        if p.is_alive():
            p.kill()
            p.join()
