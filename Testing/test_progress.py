"""Progress on every long command: a tqdm bar with an ETA when stderr is a terminal (a pty here),
nothing in a pipe except the `--progress` lines the Slicer module reads, whose format is fixed."""

import fcntl
import io
import os
import pty
import re
import struct
import subprocess
import sys
import termios
import threading
from pathlib import Path

import numpy as np
import pytest

from CephLandmarksLib import cli
from CephLandmarksLib.progress import PROGRESS_PREFIX, Progress, progress_line
from conftest import make_generic_dataset, synthetic_image, write_png

BAR = re.compile(r"\d+%\|[^|\n\r]*\|[^\[|\n\r]*\[[0-9:]+<[0-9:?]+")  # "40%|####  | 2/5 [00:02<00:03": the ETA
LINE = re.compile(rf"^{re.escape(PROGRESS_PREFIX)} (0\.\d\d|1\.00) \S.*$")
ROOT = Path(__file__).resolve().parent.parent


def _set_size(fd, rows=24, columns=100) -> None:
    """A new pty is 0 x 0 characters (tqdm would draw an empty bar): give it a terminal's size."""
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", rows, columns, 0, 0))


class Terminal:
    """A pty: `file` writes to its slave end (isatty() is True); `text()` is what a terminal received."""

    def __init__(self):
        self.master, slave = pty.openpty()
        _set_size(slave)
        self.file = io.TextIOWrapper(os.fdopen(slave, "wb", buffering=0), encoding="utf-8", write_through=True)
        self._chunks = []
        self._reader = threading.Thread(target=self._drain, daemon=True)
        self._reader.start()

    def _drain(self):
        while True:
            try:
                data = os.read(self.master, 65536)
            except OSError:  # the slave end closed
                return
            if not data:
                return
            self._chunks.append(data)

    def text(self) -> str:
        self.file.close()
        self._reader.join(5)
        os.close(self.master)
        return b"".join(self._chunks).decode("utf-8", "replace")


def test_progress_lines_keep_their_format_and_are_not_repeated():
    out = io.StringIO()
    report = Progress(lines=True, stream=out)
    for fraction, stage in ((0.0, "loading the model"), (0.001, "loading the model"), (0.4, "detecting on x.png"),
                            (0.4, "detecting on x.png"), (1.2, "done")):
        report(fraction, stage)
    assert out.getvalue().splitlines() == ["[progress] 0.00 loading the model", "[progress] 0.40 detecting on x.png",
                                           "[progress] 1.00 done"]
    assert progress_line(0.4, "detecting on x.png") == "[progress] 0.40 detecting on x.png"


def test_progress_draws_a_bar_on_a_terminal_and_nothing_in_a_pipe():
    term = Terminal()
    with Progress(stream=term.file) as report:
        for k in range(5):
            report(k / 5, f"step {k}")
    assert BAR.search(term.text())
    r, w = os.pipe()
    with os.fdopen(w, "w") as pipe, Progress(stream=pipe) as report:
        for k in range(5):
            report(k / 5, f"step {k}")
    with os.fdopen(r) as f:
        assert f.read() == ""


# --- every long command, in this process, with stderr a terminal or a pipe ---------------------------------

def _run(argv, monkeypatch, terminal: bool):
    """cli.main(argv) with stderr on a pty (terminal) or a pipe; returns (exit code, what stderr got)."""
    if terminal:
        term = Terminal()
        monkeypatch.setattr(sys, "stderr", term.file)
        code = cli.main([str(a) for a in argv])
        return code, term.text()
    r, w = os.pipe()
    pipe = os.fdopen(w, "w")
    monkeypatch.setattr(sys, "stderr", pipe)
    got = []
    reader = threading.Thread(target=lambda: got.append(os.fdopen(r).read()))
    reader.start()
    code = cli.main([str(a) for a in argv])
    pipe.close()
    reader.join(5)
    return code, got[0]


@pytest.fixture(scope="module")
def clinic(tmp_path_factory):
    return make_generic_dataset(tmp_path_factory.mktemp("clinic"), n_train=10, n_test=0, seed=3)


def _commands(tiny_model, generic_dataset, clinic, tmp: Path) -> dict:
    images = []
    for i in range(2):
        images.append(tmp / f"x{i}.png")
        write_png(images[-1], synthetic_image(np.random.default_rng(i))[0])
    common = ("--model", tiny_model)
    return {
        "detect": ["detect", *images, *common, "--out-dir", tmp / "det", "--spacing", "0.5"],
        "report": ["report", images[0], *common, "--out-dir", tmp / "rep", "--spacing", "0.5"],
        "evaluate": ["evaluate", *common, "--dataset", generic_dataset, "--split", "train", "--out", tmp / "ev"],
        "calibrate": ["calibrate", "--model", tmp / "cal.safetensors", "--dataset", generic_dataset],
        "adapt": ["adapt", *common, "--dataset", clinic, "--out", tmp / "ad.safetensors", "--methods", "none"],
        "train": ["train", "--dataset", generic_dataset, "--out", tmp / "tr.safetensors", "--input-size", "64x64",
                  "--epochs", "1", "--holdout", "2", "--device", "cpu"],
    }


@pytest.mark.slow
@pytest.mark.parametrize("command", ["detect", "report", "evaluate", "calibrate", "adapt", "train"])
def test_long_commands_show_a_bar_on_a_terminal_and_nothing_in_a_pipe(command, tiny_model, generic_dataset,
                                                                         clinic, tmp_path, monkeypatch):
    import shutil

    for where, terminal in (("tty", True), ("lines", False)):  # a pipe without --progress: the process test
        tmp = tmp_path / where
        tmp.mkdir()
        shutil.copy(tiny_model, tmp / "cal.safetensors")
        argv = _commands(tiny_model, generic_dataset, clinic, tmp)[command] + (["--progress"] if where == "lines"
                                                                                else [])
        code, err = _run(argv, monkeypatch, terminal)
        assert code == 0, err
        lines = [line for line in err.splitlines() if line.startswith(PROGRESS_PREFIX)]
        if where == "tty":
            assert BAR.search(err) and not lines, err[-2000:]
        else:  # in a pipe with --progress: its lines, in order, to the end, and no bar
            assert not BAR.search(err) and "\r" not in err, err[-2000:]
            assert lines and all(LINE.match(line) for line in lines), err[-2000:]
            fractions = [float(line.split()[1]) for line in lines]
            assert fractions == sorted(fractions) and fractions[-1] == 1.0, fractions


@pytest.mark.slow
def test_detect_in_a_real_process_under_a_pty_and_in_a_pipe(tiny_model, tmp_path):
    """The CLI as a user runs it: under a pty (python's pty module) a bar, through a pipe no bar."""
    images = []
    for i in range(3):
        images.append(tmp_path / f"x{i}.png")
        write_png(images[-1], synthetic_image(np.random.default_rng(i))[0])
    argv = [sys.executable, "-m", "CephLandmarksLib", "detect", *map(str, images), "--model", str(tiny_model),
            "--spacing", "0.5"]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    got = []

    def read(fd):
        while True:
            try:
                data = os.read(fd, 4096)
            except OSError:
                return
            if not data:
                return
            got.append(data)

    master, slave = pty.openpty()
    _set_size(slave)
    proc = subprocess.Popen(argv + ["--out-dir", str(tmp_path / "tty")], stdin=subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL, stderr=slave, env=env, cwd=ROOT)
    os.close(slave)
    reader = threading.Thread(target=read, args=(master,))
    reader.start()
    assert proc.wait(120) == 0
    reader.join(10)
    os.close(master)
    assert BAR.search(b"".join(got).decode("utf-8", "replace"))
    piped = subprocess.run(argv + ["--out-dir", str(tmp_path / "pipe")], capture_output=True, text=True, env=env,
                           cwd=ROOT, timeout=120)
    assert piped.returncode == 0 and piped.stderr == "", piped.stderr
