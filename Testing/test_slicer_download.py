"""The Slicer module's "Download NAME" model items (CephLandmarksSlicer/models.py), in the harness over the
installed module: the download runs in the `ceph-landmarks models --download` process against a local
HTTP server; a good file is listed and selected, a bad hash gives one message and leaves nothing; a
refiner item (a shipped model's second stage) lands in the per-user folder, the list selects its model,
and Detect with the second stage on names it."""

import hashlib
import http.server
import json
import os
import threading
from pathlib import Path

import pytest
from test_slicer_module_installed import loadRadiograph, skull, writeNrrd
from test_slicer_second_stage_module import noShippedRefiner  # noqa: F401 - a fixture

from slicer_harness import build, missing_reason

pytestmark = pytest.mark.skipif(bool(missing_reason() or build.skip_reason()),
                                reason=str(missing_reason() or build.skip_reason()))


def _shippedWeights(installed):
    return next(p for p in sorted((Path(installed) / "Resources" / "Models").glob("*.safetensors"))
                if not p.name.endswith(".refiner.safetensors"))  # the model, not its second stage


@pytest.fixture
def served(installed, request):
    """A local server whose /model.safetensors is the shipped model's bytes (or, parametrized "refiner", a
    refiner trained, its header says, behind them): (url, bytes)."""
    body = _shippedWeights(installed).read_bytes()
    if getattr(request, "param", None) == "refiner":
        from test_slicer_second_stage_module import shippedRefinerBytes

        body = shippedRefinerBytes(_shippedWeights(installed), request.getfixturevalue("tmp_path"))

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            if self.path != "/model.safetensors":
                self.send_error(404)
                return
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/model.safetensors", body
    httpd.shutdown()
    httpd.server_close()


def _list(tmp_path, url, sha256, size):
    path = tmp_path / "downloads.json"
    path.write_text(json.dumps({"format": "ceph-landmarks-downloads/1", "models": [
        {"name": "served", "version": "9", "file": "served.safetensors", "url": url, "sha256": sha256,
         "size": size}]}))
    os.environ["CEPH_LANDMARKS_DOWNLOADS"] = str(path)  # the harness restores os.environ on teardown


def _choose_download(harness, widget, tmp_path):
    loadRadiograph(harness, widget, writeNrrd(tmp_path / "skull.nrrd", skull(96, 120)))
    widget.updateModelList()
    index = widget.ui.modelSelector.findData("download:served")
    assert index >= 0 and widget.ui.modelSelector.itemText(index).startswith("Download served 9")
    widget.ui.modelSelector.setCurrentIndex(index)
    widget.ui.detectButton.click()
    assert widget.ui.detectButton.text == "Cancel"
    harness.process_events(until=lambda: widget._detection is None, timeout_s=120)
    return widget.logic.registry().user_dir


def test_download_item_fetches_lists_and_selects_the_model(harness, widget, served, tmp_path):
    url, body = served
    _list(tmp_path, url, hashlib.sha256(body).hexdigest(), len(body))
    user_dir = _choose_download(harness, widget, tmp_path)
    assert harness.message_boxes == [] and harness.slot_errors == []
    target = user_dir / "served.safetensors"
    assert target.read_bytes() == body
    assert widget.ui.modelSelector.currentData == str(target)
    assert "(downloaded)" in widget.ui.modelSelector.currentText
    assert widget.ui.modelSelector.findData("download:served") < 0  # no longer offered
    assert widget.ui.detectButton.text == "Detect landmarks"


def test_a_bad_hash_gives_one_message_and_leaves_nothing(harness, widget, served, tmp_path):
    url, body = served
    _list(tmp_path, url, "0" * 64, len(body))
    user_dir = _choose_download(harness, widget, tmp_path)
    assert [b["kind"] for b in harness.message_boxes] == ["error"] and harness.slot_errors == []
    text = harness.message_boxes[0]["text"]
    assert "SHA-256" in text and "Traceback" not in text and len(text.splitlines()) == 1
    assert not user_dir.exists() or [p.name for p in user_dir.iterdir() if p.name != "models.json"] == []
    assert widget.ui.modelSelector.findData("download:served") >= 0  # still offered


@pytest.mark.usefixtures("noShippedRefiner")
@pytest.mark.parametrize("served", ["refiner"], indirect=True)
def test_a_refiner_download_item_fetches_it_and_detect_runs_it(harness, widget, served, installed, tmp_path):
    url, body = served
    weights = _shippedWeights(installed)
    stem = weights.name[: -len(".safetensors")]
    path = tmp_path / "downloads.json"
    path.write_text(json.dumps({"format": "ceph-landmarks-downloads/1", "models": [
        {"kind": "refiner", "name": "served-refiner", "refines": stem, "version": "9",
         "file": stem + ".refiner.safetensors", "url": url, "sha256": hashlib.sha256(body).hexdigest(),
         "size": len(body)}]}))
    os.environ["CEPH_LANDMARKS_DOWNLOADS"] = str(path)  # the harness restores os.environ on teardown
    loadRadiograph(harness, widget, writeNrrd(tmp_path / "skull.nrrd", skull(96, 120)))
    widget.updateModelList()
    ui = widget.ui
    index = ui.modelSelector.findData("download:served-refiner")
    assert index >= 0 and ui.modelSelector.itemText(index).startswith(f"Download served-refiner 9 (second stage of "
                                                                      f"{stem}, download")
    ui.modelSelector.setCurrentIndex(index)
    ui.detectButton.click()
    harness.process_events(until=lambda: widget._detection is None, timeout_s=120)
    assert harness.message_boxes == [] and harness.slot_errors == [], harness.message_boxes
    target = widget.logic.registry().user_dir / (stem + ".refiner.safetensors")
    assert target.read_bytes() == body
    assert Path(ui.modelSelector.currentData).name == weights.name  # the model it refines is selected
    assert "Second stage downloaded" in ui.statusLabel.text
    assert ui.modelSelector.findData("download:served-refiner") < 0  # no longer offered
    assert ui.secondStageCheckBox.checked
    ui.detectButton.click()  # Detect with the second stage: the downloaded refiner, named
    line = widget._detection.job.commandLine
    assert line[line.index("--refine") + 1] == str(target)
    ui.detectButton.click()  # Cancel (test_slicer_second_stage_module runs a detection with such a refiner)
    harness.process_events(until=lambda: widget._detection is None, timeout_s=30)
