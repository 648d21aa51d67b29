"""Detect through the long-lived worker (CephLandmarksSlicer/worker.py), in the harness over the installed
module: a second Detect reuses the worker and gives the same points; Cancel during a worker job leaves
no Python process (by pid) and the next Detect starts a new worker; another model starts a new worker."""

import shutil
import sys

import pytest
from test_slicer_module_installed import detectAndWait, loadRadiograph, skull, writeNrrd

from slicer_harness import build, missing_reason
from slicer_harness.process import descendant_pids, pid_running

pytestmark = pytest.mark.skipif(bool(missing_reason() or build.skip_reason()),
                                reason=str(missing_reason() or build.skip_reason()))


def _worker():
    return sys.modules["CephLandmarksSlicer.worker"]._WORKER


def _points(widget):
    rows = sys.modules["CephLandmarksSlicer.markups"].landmarkRows(widget._parameterNode.landmarks)
    return [(r["x_px"], r["y_px"]) for r in rows]


def _tree(harness, launcher):
    harness.process_events(until=lambda: descendant_pids(launcher), timeout_s=30)
    return [launcher, *descendant_pids(launcher)]  # PythonSlicer is a launcher: Python is its child


def test_a_second_detect_reuses_the_worker_and_gives_the_same_points(harness, widget, tmp_path):
    loadRadiograph(harness, widget, writeNrrd(tmp_path / "skull.nrrd", skull()))
    detectAndWait(harness, widget)
    first, worker = _points(widget), _worker().process
    assert worker is not None and worker.running  # it stays, waiting for the next job
    detectAndWait(harness, widget)
    assert _worker().process is worker and _points(widget) == first
    assert harness.message_boxes == [] and harness.slot_errors == []
    assert "landmarks" in widget.ui.statusLabel.text


def test_cancel_during_a_worker_job_leaves_no_python_and_the_next_detect_starts_a_new_worker(harness, widget,
                                                                                             tmp_path):
    loadRadiograph(harness, widget, writeNrrd(tmp_path / "skull.nrrd", skull()))
    detectAndWait(harness, widget)  # the worker is running, idle
    worker = _worker().process
    tree = _tree(harness, worker._process.processId())
    widget.ui.detectButton.click()  # a job for the running worker
    job = widget._detection
    assert job._process is worker and job.running
    widget.ui.detectButton.click()  # Cancel
    harness.process_events(until=lambda: widget._detection is None, timeout_s=30)
    assert [pid for pid in tree if pid_running(pid)] == []
    assert not job.folder.exists() and widget.ui.statusLabel.text == "Cancelled."
    assert _worker().process is None
    detectAndWait(harness, widget)
    assert _worker().process is not None and _worker().process is not worker
    assert harness.message_boxes == [] and harness.slot_errors == []


def test_another_model_starts_another_worker(harness, widget, tmp_path):
    loadRadiograph(harness, widget, writeNrrd(tmp_path / "skull.nrrd", skull()))
    detectAndWait(harness, widget)
    worker = _worker().process
    tree = _tree(harness, worker._process.processId())
    copy = tmp_path / "copy.safetensors"
    shutil.copyfile(widget.ui.modelSelector.currentData, copy)
    widget.logic.registerTrainedModel(str(copy))
    widget.updateModelList(select=copy)
    detectAndWait(harness, widget)
    assert _worker().process is not worker and [pid for pid in tree if pid_running(pid)] == []
    assert harness.message_boxes == [] and harness.slot_errors == []
