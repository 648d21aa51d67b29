"""Models as verified downloads (store/download.py), against a small HTTP server on 127.0.0.1: a good
file, a bad hash, a truncated transfer and a 404 each give one clear line, and nothing is left behind."""

import hashlib
import http.server
import json
import threading

import pytest

from CephLandmarksLib import cli
from CephLandmarksLib.errors import CephError
from CephLandmarksLib.store import download, registry

BODY = bytes(range(256)) * 4000  # 1 MB: more than one read chunk
BODY_BYTES = len(BODY)


class _Handler(http.server.BaseHTTPRequestHandler):
    """/good: the body; /short: announces the body's length, sends half and closes; anything else: 404."""

    extra = {}  # path -> body, set by a test

    def do_GET(self):
        if self.path in self.extra:
            self.send_response(200)
            self.send_header("Content-Length", str(len(self.extra[self.path])))
            self.end_headers()
            self.wfile.write(self.extra[self.path])
            return
        if self.path not in ("/good", "/short"):
            self.send_error(404, "Not Found")
            return
        self.send_response(200)
        self.send_header("Content-Length", str(len(BODY)))
        self.end_headers()
        self.wfile.write(BODY if self.path == "/good" else BODY[: len(BODY) // 2])
        self.wfile.flush()
        self.close_connection = True

    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def server():
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def _listing(tmp_path, url, sha256=None, size=BODY_BYTES, name="model-a"):
    path = tmp_path / "downloads.json"
    item = {"name": name, "version": "1", "file": f"{name}.safetensors", "url": url,
            "sha256": sha256 or hashlib.sha256(BODY).hexdigest(), "size": size}
    path.write_text(json.dumps({"format": download.FORMAT, "models": [item]}))
    return download.downloadable(path)[0]


def _fetch(item, folder):
    folder.mkdir(exist_ok=True)
    with pytest.raises(CephError) as e:
        download.fetch(item, folder)
    message = str(e.value)
    assert "\n" not in message and item.name in message
    assert list(folder.iterdir()) == []  # nothing half-written, no temporary file
    return message


def test_a_good_file_is_fetched_verified_and_kept(server, tmp_path):
    item = _listing(tmp_path, f"{server}/good")
    seen = []
    path = download.fetch(item, tmp_path / "user", progress=lambda f, s: seen.append(f))
    assert path == tmp_path / "user" / "model-a.safetensors" and path.read_bytes() == BODY
    assert seen[-1] == 1.0 and sorted(p.name for p in path.parent.iterdir()) == ["model-a.safetensors"]
    assert download.is_installed(item, path.parent)
    assert download.fetch(item, path.parent, opener=lambda *a, **k: pytest.fail("fetched again")) == path


def test_a_bad_hash_is_refused(server, tmp_path):
    message = _fetch(_listing(tmp_path, f"{server}/good", sha256="0" * 64), tmp_path / "user")
    assert "SHA-256" in message and "refused" in message


def test_a_truncated_transfer_is_refused(server, tmp_path):
    message = _fetch(_listing(tmp_path, f"{server}/short"), tmp_path / "user")
    assert "truncated" in message and f"of {len(BODY)} bytes" in message


def test_a_larger_file_than_listed_is_refused(server, tmp_path):
    message = _fetch(_listing(tmp_path, f"{server}/good", size=1000), tmp_path / "user")
    assert "larger than the listed 1000 bytes" in message


def test_a_404_is_named(server, tmp_path):
    message = _fetch(_listing(tmp_path, f"{server}/missing"), tmp_path / "user")
    assert "HTTP 404" in message and "/missing" in message


def test_an_unreachable_server_is_named(tmp_path):
    message = _fetch(_listing(tmp_path, "http://127.0.0.1:9/x"), tmp_path / "user")  # the discard port: closed
    assert "cannot download model-a" in message


def test_a_different_file_at_the_target_is_never_replaced(server, tmp_path):
    item = _listing(tmp_path, f"{server}/good")
    (tmp_path / "user").mkdir()
    (tmp_path / "user" / item.file).write_bytes(b"mine")
    with pytest.raises(CephError, match="move it away"):
        download.fetch(item, tmp_path / "user")
    assert (tmp_path / "user" / item.file).read_bytes() == b"mine"


def test_the_shipped_list_is_valid_and_the_cli_names_an_unknown_model(tmp_path, capsys):
    assert all(d.url.startswith("https://") for d in download.downloadable())  # empty until a release asset exists
    code = cli.main(["models", "--download", "no-such-model", "--user-dir", str(tmp_path / "u")])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "no downloadable model 'no-such-model'" in err
    assert not (tmp_path / "u").exists()


@pytest.mark.parametrize("change, words", [
    (lambda m: m.update(sha256="ABC"), "'sha256'"),
    (lambda m: m.update(file="../x.safetensors"), "'file'"),
    (lambda m: m.update(url="file:///etc/passwd"), "'url'"),
    (lambda m: m.pop("size"), "'size'"),
])
def test_a_bad_list_entry_is_named(change, words, tmp_path):
    item = {"name": "m", "version": "1", "file": "m.safetensors", "url": "https://x/m", "sha256": "0" * 64,
            "size": 10}
    change(item)
    path = tmp_path / "downloads.json"
    path.write_text(json.dumps({"format": download.FORMAT, "models": [item]}))
    with pytest.raises(CephError, match=words):
        download.downloadable(path)


def test_the_registry_downloads_a_model_and_lists_it_as_downloaded(server, tiny_model, tmp_path, capsys):
    body = tiny_model.read_bytes()
    listing = tmp_path / "downloads.json"
    listing.write_text(json.dumps({"format": download.FORMAT, "models": [
        {"name": "tiny", "version": "2", "file": "tiny.safetensors", "url": f"{server}/good",
         "sha256": hashlib.sha256(body).hexdigest(), "size": len(body)}]}))
    reg = registry.ModelRegistry(tmp_path / "user", shipped_dir=tmp_path / "none", downloads=listing)
    assert [d.name for d in reg.downloadable()] == ["tiny"]

    class _Response:  # the tiny model's bytes as the server's body (the server serves BODY)
        def __init__(self, *a, **k):
            self.data = memoryview(body)

        def read(self, n):
            chunk, self.data = bytes(self.data[:n]), self.data[n:]
            return chunk

        def __enter__(self):
            return self

        def __exit__(self, *a):
            pass

    entry = reg.download("tiny", opener=_Response)
    assert entry.kind == "downloaded" and entry.path == tmp_path / "user" / "tiny.safetensors"
    assert [(e.kind, e.path) for e in reg.models()] == [("downloaded", entry.path)]
    assert reg.downloadable() == []


def test_detect_with_a_listed_name_downloads_the_model_on_first_use(server, tiny_model, generic_dataset, tmp_path,
                                                                    monkeypatch, capsys):
    body = tiny_model.read_bytes()
    _Handler.extra["/tiny.safetensors"] = body
    listing = tmp_path / "downloads.json"
    listing.write_text(json.dumps({"format": download.FORMAT, "models": [
        {"name": "tiny", "version": "2", "file": "tiny.safetensors", "url": f"{server}/tiny.safetensors",
         "sha256": hashlib.sha256(body).hexdigest(), "size": len(body)}]}))
    monkeypatch.setenv(download.DOWNLOADS_ENV, str(listing))
    monkeypatch.setenv(download.USER_DIR_ENV, str(tmp_path / "models"))
    monkeypatch.chdir(tmp_path)  # no file called "tiny" here
    for out in ("a", "b"):  # the second run finds it downloaded
        code = cli.main(["detect", str(generic_dataset / "img09.png"), "--model", "tiny", "--out-dir", out,
                         "--no-overlay"])
        assert code == 0, capsys.readouterr().err
        d = json.loads((tmp_path / out / "img09.json").read_text())
        assert d["model"]["sha256"] == hashlib.sha256(body).hexdigest()
    assert (tmp_path / "models" / "tiny.safetensors").read_bytes() == body
    assert registry.model_path_or_download("elsewhere.safetensors") == registry.Path("elsewhere.safetensors")
