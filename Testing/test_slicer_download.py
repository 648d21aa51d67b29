"""The Slicer module's "Download NAME" model items (CephLandmarksSlicer/models.py), in the harness over the
installed module: the download runs in the `ceph-landmarks models --download` process against a local
HTTP server; a good file is listed and selected, a bad hash gives one message and leaves nothing."""

import hashlib
import http.server
import json
import os
import threading
from pathlib import Path

import pytest
from test_slicer_module_installed import loadRadiograph, skull, writeNrrd

from slicer_harness import build, missing_reason

pytestmark = pytest.mark.skipif(bool(missing_reason() or build.skip_reason()),
                                reason=str(missing_reason() or build.skip_reason()))


@pytest.fixture
def served(installed):
    """A local server whose /model.safetensors is the shipped model's bytes: (url, bytes)."""
    body = next(p for p in sorted((Path(installed) / "Resources" / "Models").glob("*.safetensors"))
                if not p.name.endswith(".refiner.safetensors")).read_bytes()  # the model, not its second stage

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
