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


# --- a model's second stage (a refiner) as a download -----------------------------------------------------


def _refiner_listing(tmp_path, url, body, **change):
    """A list with one refiner entry (`change` alters it) for the weights base.safetensors of a 'shipped' folder."""
    from test_registry import write_model

    shipped = tmp_path / "shipped"
    if not shipped.is_dir():
        write_model(shipped / "base.safetensors", name="base")
    item = {"kind": "refiner", "name": "base-refiner", "refines": "base", "version": "1",
            "file": "base.refiner.safetensors", "url": url, "sha256": hashlib.sha256(body).hexdigest(),
            "size": len(body)}
    item.update(change)
    path = tmp_path / "downloads.json"
    path.write_text(json.dumps({"format": download.FORMAT, "models": [item]}))
    return path, shipped


@pytest.fixture
def refiner_served(server, tmp_path, monkeypatch):
    """A refiner file for the shipped-folder weights base.safetensors, served at /base.refiner.safetensors;
    the list names it, the per-user folder is tmp_path/user and cli's shipped folder tmp_path/shipped:
    (listing, shipped folder, user folder, refiner bytes)."""
    from test_refiner_default import header_refiner
    from test_registry import write_model

    shipped = tmp_path / "shipped"
    weights = write_model(shipped / "base.safetensors", name="base")
    body = header_refiner(tmp_path / "made" / "base.refiner.safetensors", hashlib.sha256(weights.read_bytes())
                          .hexdigest()).read_bytes()
    _Handler.extra["/base.refiner.safetensors"] = body
    listing, _shipped = _refiner_listing(tmp_path, f"{server}/base.refiner.safetensors", body)
    monkeypatch.setenv(download.DOWNLOADS_ENV, str(listing))
    monkeypatch.setenv(download.USER_DIR_ENV, str(tmp_path / "user"))
    monkeypatch.setattr(cli, "DEFAULT_MODEL_DIR", shipped)
    return listing, shipped, tmp_path / "user", body


def test_a_refiner_entry_is_listed_downloaded_verified_and_then_the_default(refiner_served, capsys):
    listing, shipped, user, body = refiner_served
    [item] = download.downloadable(listing, shipped)
    assert (item.kind, item.refines) == ("refiner", "base")
    assert item.label.startswith("base-refiner 1 (second stage of base, download")
    assert registry.default_refiner(shipped / "base.safetensors") is None
    # listed before it is downloaded, saying which model it refines and how to get it
    assert cli.main(["models"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out == [f"base (shipped)\t{shipped / 'base.safetensors'}",
                   f"base-refiner 1 (second stage of base, not downloaded: ceph-landmarks models --download "
                   f"base-refiner)\t{item.url}"]
    assert cli.main(["models", "--download", "base-refiner", "--progress"]) == 0
    out, err = capsys.readouterr()
    target = user / "base.refiner.safetensors"
    assert out.splitlines() == [str(target)] and "[progress] 1.00 downloading base-refiner" in err
    assert target.read_bytes() == body
    assert sorted(p.name for p in user.iterdir()) == [target.name]  # no temporary file; not recorded as a model
    assert cli.main(["models", "--user-dir", str(user)]) == 0
    assert capsys.readouterr().out.splitlines()[-1] == f"base-refiner 1 (second stage of base, downloaded)\t{target}"
    reg = registry.ModelRegistry(user, shipped_dir=shipped, downloads=listing)
    assert [e.path for e in reg.models()] == [shipped / "base.safetensors"] and reg.downloadable() == []
    # detect's default for the shipped weights ($CEPH_LANDMARKS_MODELS_DIR is the user folder)
    assert registry.default_refiner(shipped / "base.safetensors") == target
    assert cli.main(["models", "--download", "base-refiner"]) == 0  # already there: kept, not fetched again
    assert capsys.readouterr().out.strip() == str(target) and target.read_bytes() == body


def test_a_refiner_of_a_bad_hash_or_not_a_refiner_leaves_nothing(server, tmp_path, monkeypatch, capsys):
    body = BODY  # served at /good: not a refiner file
    for sha256, words in (("0" * 64, "SHA-256"), (hashlib.sha256(body).hexdigest(), "not a refiner file")):
        listing, shipped = _refiner_listing(tmp_path, f"{server}/good", body, sha256=sha256)
        monkeypatch.setenv(download.DOWNLOADS_ENV, str(listing))
        monkeypatch.setattr(cli, "DEFAULT_MODEL_DIR", shipped)
        code = cli.main(["models", "--download", "base-refiner", "--user-dir", str(tmp_path / "user")])
        err = capsys.readouterr().err
        assert code == 2 and err.count("\n") == 1 and words in err and "base-refiner" in err
        assert list((tmp_path / "user").iterdir()) == []


@pytest.mark.parametrize("change, words", [
    ({"sha256": None}, "needs 'sha256'"),
    ({"refines": None}, "needs 'refines'"),
    ({"refines": "nobody", "file": "nobody.refiner.safetensors"}, "refines 'nobody', a model that is neither"),
    ({"file": "other.refiner.safetensors"}, "must be 'base.refiner.safetensors'"),
    ({"kind": "second stage"}, "'kind' must be one of model, refiner"),
    ({"kind": "model"}, "only a refiner entry"),
    ({"kind": "model", "refines": None}, "is a refiner's name"),
])
def test_a_bad_refiner_entry_is_one_line(change, words, tmp_path, monkeypatch, capsys):
    change = dict(change)
    listing, shipped = _refiner_listing(tmp_path, "https://x/base.refiner.safetensors", b"x")
    data = json.loads(listing.read_text())
    for key, value in change.items():
        if value is None:
            data["models"][0].pop(key)
        else:
            data["models"][0][key] = value
    listing.write_text(json.dumps(data))
    with pytest.raises(CephError, match=words) as e:
        download.downloadable(listing, shipped)
    assert "\n" not in str(e.value) and "entry 1" in str(e.value)
    monkeypatch.setenv(download.DOWNLOADS_ENV, str(listing))
    monkeypatch.setattr(cli, "DEFAULT_MODEL_DIR", shipped)
    assert cli.main(["models", "--download", "base-refiner", "--user-dir", str(tmp_path / "user")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and words.split("'")[0] in err and not (tmp_path / "user").exists()


def test_a_refiner_may_refine_a_listed_model_and_a_name_is_not_a_model(tmp_path):
    model = {"name": "m", "version": "1", "file": "m.safetensors", "url": "https://x/m", "sha256": "0" * 64,
             "size": 10}
    refiner = {"kind": "refiner", "name": "m-refiner", "refines": "m", "version": "1",
               "file": "m.refiner.safetensors", "url": "https://x/r", "sha256": "1" * 64, "size": 10}
    path = tmp_path / "downloads.json"
    path.write_text(json.dumps({"format": download.FORMAT, "models": [model, refiner]}))
    assert [d.kind for d in download.downloadable(path, tmp_path / "no shipped")] == ["model", "refiner"]
    path.write_text(json.dumps({"format": download.FORMAT, "models": [model, dict(model, name="m2")]}))
    with pytest.raises(CephError, match="lists a file twice"):
        download.downloadable(path, tmp_path)


def test_the_shipped_list_publishes_nothing():
    """No release asset is published: an entry whose address answers 404 must not ship."""
    assert json.loads(download.DOWNLOADS_JSON.read_text())["models"] == []
