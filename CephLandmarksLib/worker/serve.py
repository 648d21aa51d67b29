"""`ceph-landmarks worker`: detection jobs, one at a time, in one long-lived process.

Each Detect in Slicer used to start a new process, which imported torch and loaded the model
before the network's fraction of a second.  The worker keeps both: it reads job lines on stdin
(protocol.py), runs each as the command line itself, ``cli.main(["detect", ...])`` (the same
options, checks, files and error lines), with the detector kept loaded
(outputs/loaded_detector.py), and answers with one result line on stdout.  The output files are
those `ceph-landmarks detect` writes for the same arguments.

It exits when stdin closes (Slicer quit or closed the pipe) or when no job came for the idle time;
it replaces the kept model when a job names another model or device (the Slicer client starts a new
worker then).  A killed worker leaves at most the temporary files of an unfinished write, in the
job's own output folder (the Slicer client removes that folder).
"""

import contextlib
import io
import queue
import sys
import threading


def _lines(stream) -> queue.Queue:
    """stdin's lines on a queue, then None at end of file (a thread: waiting with a timeout works on
    every platform, select() does not on Windows pipes)."""
    q = queue.Queue()

    def read():
        for line in stream:
            q.put(line)
        q.put(None)

    threading.Thread(target=read, daemon=True, name="worker-stdin").start()
    return q


def run_job(line: str, stdout, main) -> None:
    """One job: `detect ARGS` as the command line runs it (`main`, the CLI's: cli.py passes it, so
    this module does not import the CLI); its stdout (the written paths) is kept for the result line,
    its stderr (progress, the error line) passes through."""
    from ..progress import ERROR_PREFIX
    from .protocol import parse_job, result_line

    try:
        args = parse_job(line)
    except ValueError as e:
        print(f"{ERROR_PREFIX} {e}", file=sys.stderr, flush=True)
        print(result_line(2, []), file=stdout, flush=True)
        return
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        code = main(["detect", *args])
    print(result_line(code, [p for p in printed.getvalue().splitlines() if p.strip()]), file=stdout, flush=True)


def serve(main, idle_timeout_s: float, stdin=None, stdout=None) -> int:
    """Run jobs with `main` (cli.main) until stdin closes or none comes for idle_timeout_s seconds; returns 0."""
    from ..memory import limit_heap_fragmentation
    from ..outputs.loaded_detector import keep_loaded

    stdin, stdout = stdin or sys.stdin, stdout or sys.stdout
    limit_heap_fragmentation()  # a long-lived process, image after image
    keep_loaded()
    import torch  # noqa: F401 - imported now, while no job waits for it

    jobs = _lines(stdin)
    while True:
        try:
            line = jobs.get(timeout=idle_timeout_s)
        except queue.Empty:
            return 0
        if line is None:
            return 0
        if line.strip():
            run_job(line, stdout, main)
