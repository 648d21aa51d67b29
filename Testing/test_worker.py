"""`ceph-landmarks worker` (CephLandmarksLib/worker/serve.py): detect jobs over stdin/stdout in one process with
the model kept loaded; the files are those the command line writes for the same image (the same JSON,
the same heatmaps npz), a bad job is one error line and the worker goes on, and it exits when stdin
closes or after its idle time."""

import json
import os
import subprocess
import sys
import time

import numpy as np
import pytest

from CephLandmarksLib.worker.protocol import job_line, parse_result

pytestmark = pytest.mark.slow  # each test starts Python processes that import torch


def _env():
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    return dict(os.environ, PYTHONPATH=root + os.pathsep + os.environ.get("PYTHONPATH", ""), PYTHONUNBUFFERED="1")


def _worker(*jobs, idle="60"):
    """Run a worker on the job lines, stdin closed after them: (exit code, stdout lines, stderr)."""
    r = subprocess.run([sys.executable, "-m", "CephLandmarksLib", "worker", "--idle-timeout", idle],
                       input="".join(jobs), capture_output=True, text=True, env=_env(), timeout=300)
    return r.returncode, r.stdout.splitlines(), r.stderr


def _detect_args(image, model, out):
    return [str(image), "--model", str(model), "--out-dir", str(out), "--heatmaps", "--no-overlay", "--progress"]


def _same_outputs(a, b, stem):
    ja, jb = (json.loads((d / f"{stem}.json").read_text()) for d in (a, b))
    assert ja == jb  # the same image path in: nothing differs but timestamps, and the JSON has none
    assert (a / f"{stem}.mrk.json").read_text() == (b / f"{stem}.mrk.json").read_text()
    with np.load(a / f"{stem}.heatmaps.npz") as na, np.load(b / f"{stem}.heatmaps.npz") as nb:
        assert sorted(na.files) == sorted(nb.files)
        for key in na.files:
            np.testing.assert_array_equal(na[key], nb[key], err_msg=key)


def test_worker_jobs_write_what_the_cli_writes(tiny_model, generic_dataset, tmp_path):
    image = generic_dataset / "img09.png"
    cli = subprocess.run([sys.executable, "-m", "CephLandmarksLib", "detect",
                          *_detect_args(image, tiny_model, tmp_path / "cli")],
                         capture_output=True, text=True, env=_env(), timeout=300)
    assert cli.returncode == 0, cli.stderr
    code, out, err = _worker(job_line(_detect_args(image, tiny_model, tmp_path / "w1")),
                             job_line(_detect_args(image, tiny_model, tmp_path / "w2")))
    assert code == 0, err
    results = [parse_result(line) for line in out]
    assert all(results) and [r["exit_code"] for r in results] == [0, 0], out
    assert sorted(results[0]["written"]) == sorted(str(p) for p in (tmp_path / "w1").iterdir())
    assert err.count("[progress] 1.00 done") == 2 and "Traceback" not in err
    for folder in ("w1", "w2"):
        _same_outputs(tmp_path / "cli", tmp_path / folder, "img09")


def test_a_bad_job_is_one_error_line_and_the_worker_goes_on(tiny_model, generic_dataset, tmp_path):
    image = generic_dataset / "img09.png"
    code, out, err = _worker("not json\n",
                             job_line([str(image), "--model", str(tmp_path / "missing.safetensors"),
                                       "--out-dir", str(tmp_path / "x")]),
                             job_line(_detect_args(image, tiny_model, tmp_path / "ok")))
    assert code == 0, err
    assert [parse_result(line)["exit_code"] for line in out] == [2, 2, 0]
    errors = [line for line in err.splitlines() if line.startswith("ceph-landmarks: error:")]
    assert len(errors) == 2 and "JSON" in errors[0] and "model file not found" in errors[1]
    assert (tmp_path / "ok" / "img09.json").is_file() and not (tmp_path / "x").exists()


def test_another_model_in_a_job_is_loaded(tiny_model, generic_dataset, tmp_path):
    """A job naming another model file (here a sidecar of the same weights) gets that model's settings."""
    from CephLandmarksLib.store import registry, sidecar

    weights = tmp_path / "m.safetensors"
    weights.write_bytes(tiny_model.read_bytes())
    meta = registry.read_model_info(weights)
    sidecar.write_sidecar(tmp_path / "m.other.json", weights, dict(meta, ere_threshold_mm=9.5))
    image = generic_dataset / "img09.png"
    code, out, err = _worker(job_line(_detect_args(image, weights, tmp_path / "a")),
                             job_line(_detect_args(image, tmp_path / "m.other.json", tmp_path / "b")))
    assert code == 0, err
    a, b = (json.loads((tmp_path / d / "img09.json").read_text()) for d in "ab")
    assert a["model"]["settings"]["source"] == "weights file" and a["ere_threshold_mm"] != 9.5
    assert b["model"]["settings"]["source"] == "sidecar" and b["ere_threshold_mm"] == 9.5


def test_the_worker_exits_after_its_idle_time():
    started = time.monotonic()
    p = subprocess.Popen([sys.executable, "-m", "CephLandmarksLib", "worker", "--idle-timeout", "1"],
                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=_env())
    try:
        assert p.wait(timeout=120) == 0  # stdin still open: it left on its own
    finally:
        p.kill()
        p.stdin.close()
        p.stdout.close()
        p.stderr.close()
    assert time.monotonic() - started >= 1.0
