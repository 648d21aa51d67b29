"""The lines a command prints for a process that watches it (the Slicer module): progress and the
one error line; and what a long command shows as it advances (Progress).  No torch: the Slicer
process parses the lines (tqdm is imported only when a bar is drawn)."""

import sys
import threading

PROGRESS_PREFIX = "[progress]"  # `--progress` lines: "[progress] FRACTION STAGE"
ERROR_PREFIX = "ceph-landmarks: error:"  # the one line a user error prints
# Held by a thread writing a line to stdout or stderr (Progress) and by one whose C libraries' output is
# redirected away from them (imaging.images.NativeOutput, process-wide): otherwise a line written by one
# thread while another reads an image would vanish into that image's captured output (detect's pipeline).
STREAMS_LOCK = threading.RLock()
BAR_STEPS = 1000  # the bar counts thousandths of the run, so tqdm's rate and ETA follow the fraction done


def progress_line(fraction: float, stage: str) -> str:
    """`[progress] 0.40 stage`: the fraction done, two decimals, and what is running."""
    return f"{PROGRESS_PREFIX} {fraction:.2f} {stage}"


def is_terminal(stream) -> bool:
    """Whether `stream` is a terminal (a pipe, a file or a closed stream is not)."""
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError, OSError):
        return False


class Progress:
    """progress(fraction, stage) for a long command, shown in one of three ways:
    - lines=True (`--progress`): `[progress] FRACTION STAGE` lines on the stream, for the Slicer
      module; a line is printed only when its text changes (two decimals), so a long run prints
      at most about a hundred per stage;
    - else, when `bar` and the stream is a terminal: a tqdm bar with the stage and an ETA;
    - else nothing (a pipe or a log file stays quiet).
    Use it as a context manager, or call close(): the bar is removed at the end."""

    def __init__(self, lines: bool = False, bar: bool = True, stream=None):
        self.lines = lines
        self.stream = stream if stream is not None else sys.stderr
        self._last = None
        self._fraction = 0.0
        self._bar = None
        self._show_bar = bar and not lines and is_terminal(self.stream)
        self._lock = STREAMS_LOCK  # detect's stages report from several threads; a line is written whole

    def __call__(self, fraction: float, stage: str) -> None:
        with self._lock:
            fraction = min(1.0, max(0.0, float(fraction), self._fraction))  # never backwards (stages in threads)
            self._fraction = fraction
            if self.lines:
                line = progress_line(fraction, stage)
                if line != self._last:
                    self._last = line
                    self._print(line)
            elif self._show_bar:
                self._draw(fraction, stage)

    def write(self, message: str) -> None:
        """A message on the stream that leaves the bar intact (tqdm.write while a bar is drawn)."""
        with self._lock:
            if self._bar is not None:
                self._bar.write(message, file=self.stream)
            else:
                self._print(message)

    def _print(self, text: str) -> None:
        self.stream.write(text + "\n")  # one write: an interruption cannot split the line from its end
        self.stream.flush()

    def _draw(self, fraction, stage):
        if self._bar is None:
            from tqdm import tqdm

            self._bar = tqdm(total=BAR_STEPS, file=self.stream, leave=False, dynamic_ncols=True,
                             bar_format="{desc}: {percentage:3.0f}%|{bar}| [{elapsed}<{remaining}]")
        if stage != self._bar.desc:
            self._bar.set_description_str(stage)
        self._bar.update(max(0, round(fraction * BAR_STEPS) - self._bar.n))

    def close(self) -> None:
        with self._lock:
            if self._bar is not None:
                self._bar.close()
                self._bar = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
