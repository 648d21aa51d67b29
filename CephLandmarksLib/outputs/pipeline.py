"""Three stages over a long list of files, overlapped so the machine stays busy: a small thread pool
reads and decodes ahead of the network, the calling thread runs the network, and one writer thread
writes the results behind it.

Order is kept: items are processed and written in the order given, so the files written (and the
lines printed for bad inputs) are those of one-after-another processing.  Memory is bounded: at
most `ahead` items are read but not yet processed, and at most `behind` processed but not yet
written, however many items there are (10,000 files hold as much memory as 10).

Each stage reports a bad item by raising CephError; `on_error(item, error)` is told (in order for
reading and processing; writing errors come as they happen) and the other items go on.  Anything
else (an interruption, a full disk) stops the run: the reading ahead is cancelled, the writer
finishes the item it holds (whole-or-nothing) and drops the rest, and the exception is raised in
the calling thread.
"""

import queue
import threading
from collections import deque
from concurrent.futures import ThreadPoolExecutor

from ..errors import CephError

READERS = 1  # the decoding thread: one, as reading redirects the C libraries' output process-wide
# (imaging.images.NativeOutput), so two reads at once would mix their decoders' messages
AHEAD = 3  # items read ahead of the network
BEHIND = 2  # items processed and waiting for the writer
_DONE = object()


class _Writer(threading.Thread):
    """Writes (item, result) pairs in order; an unforeseen exception is kept for the caller."""

    def __init__(self, write, on_error, behind):
        super().__init__(name="ceph-landmarks-writer", daemon=True)
        self.jobs = queue.Queue(maxsize=behind)
        self.stop = threading.Event()
        self.error = None
        self._write, self._on_error = write, on_error

    def run(self):
        while True:
            job = self.jobs.get()
            if job is _DONE or self.stop.is_set():
                return
            item, result = job
            try:
                self._write(item, result)
            except CephError as e:
                self._on_error(item, e)
            except BaseException as e:  # noqa: BLE001  (raised again in the calling thread)
                self.error = e
                return

    def put(self, job):
        """Queue a job, waiting while the queue is full; raises the writer's error if it stopped."""
        while True:
            self.check()
            try:
                self.jobs.put(job, timeout=0.1)
                return
            except queue.Full:
                continue

    def check(self):
        if self.error is not None:
            raise self.error


def run_pipeline(items, read, process, write, on_error, readers: int = READERS, ahead: int = AHEAD,
                 behind: int = BEHIND) -> None:
    """For each item in order: value = read(item) in the pool, result = process(item, value) here,
    write(item, result) in the writer thread.  See the module's docstring."""
    items = list(items)
    writer = _Writer(write, on_error, behind)
    writer.start()
    pending = deque()
    with ThreadPoolExecutor(max_workers=max(1, readers), thread_name_prefix="ceph-landmarks-reader") as pool:
        try:
            upcoming = iter(items)
            for item in upcoming:
                pending.append((item, pool.submit(read, item)))
                if len(pending) >= ahead:
                    break
            while pending:
                item, future = pending.popleft()
                nxt = next(upcoming, _DONE)
                if nxt is not _DONE:
                    pending.append((nxt, pool.submit(read, nxt)))
                try:
                    value = future.result()
                    result = process(item, value)
                except CephError as e:
                    on_error(item, e)
                    continue
                finally:
                    value = None  # noqa: F841  (the decoded image is not held while waiting for the writer)
                writer.put((item, result))
                result = None
            writer.put(_DONE)
            writer.join()
            writer.check()
        except BaseException:
            writer.stop.set()
            for _, future in pending:
                future.cancel()
            _unblock(writer)
            writer.join()
            raise


def _unblock(writer) -> None:
    """Let a writer waiting on an empty queue see its stop flag."""
    try:
        writer.jobs.put_nowait(_DONE)
    except queue.Full:
        pass
