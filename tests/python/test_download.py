"""Resumable download (scripts/mmsearch_models/download.py) against a local HTTP server on
127.0.0.1 serving deterministic-weight checkpoint files in the official layout."""
from __future__ import annotations

import hashlib
import http.server
import threading
from pathlib import Path

import pytest

from mmsearch_models import download, zoo


class Server:
    """A threaded HTTP server on 127.0.0.1 serving files from `root`, with Range support and
    injectable faults per file name: "cut" (close after half the body, once), "cut_always",
    "500", "404", "no_range" (ignores Range), "short" (announces the full length, sends less)."""

    def __init__(self, root: Path):
        self.root = Path(root)
        self.faults = {}
        self.requests = []
        srv = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a):
                pass

            def do_GET(self):
                name = self.path.lstrip("/")
                rng = self.headers.get("Range")
                srv.requests.append((name, rng))
                fault = srv.faults.get(name)
                if fault in ("500", "404"):
                    body = b"error\n"
                    self.send_response(int(fault))
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                    return
                path = srv.root / name
                if not path.is_file():
                    self.send_error(404)
                    return
                data = path.read_bytes()
                start = 0
                if rng and fault != "no_range":
                    start = int(rng.split("=")[1].split("-")[0])
                    if start >= len(data):
                        self.send_response(416)
                        self.send_header("Content-Range", f"bytes */{len(data)}")
                        self.send_header("Content-Length", "0")
                        self.end_headers()
                        return
                    self.send_response(206)
                    self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
                else:
                    self.send_response(200)
                body = data[start:]
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if fault in ("cut", "cut_always", "short"):
                    self.wfile.write(body[: len(body) // 2])
                    self.wfile.flush()
                    if fault == "cut":
                        srv.faults.pop(name)
                    self.close_connection = True
                    return
                self.wfile.write(body)

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *a):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture(scope="module")
def served_files(tmp_path_factory) -> Path:
    """Tiny deterministic checkpoints of blip2-pretrain: the un-prefixed ViT file and the
    {"model": sd} file, as the official URLs serve them."""
    root = tmp_path_factory.mktemp("served")
    zoo.write_deterministic_checkpoints("blip2-pretrain", root, tiny=True)
    return root


@pytest.fixture
def server(served_files):
    with Server(served_files) as s:
        yield s


def _sha(p: Path) -> str:
    return hashlib.sha256(p.read_bytes()).hexdigest()


def test_full_download(server, served_files, tmp_path):
    for name in ("eva_vit_g.pth", "blip2_pretrained.pth"):
        src = served_files / name
        got = download.fetch(f"{server.url}/{name}", tmp_path / name, sha256=_sha(src), quiet=True)
        assert got.read_bytes() == src.read_bytes()
        assert not (tmp_path / (name + ".part")).exists()


def test_cached_file_is_reused(server, served_files, tmp_path):
    src = served_files / "eva_vit_g.pth"
    download.fetch(f"{server.url}/eva_vit_g.pth", tmp_path / "f.pth", sha256=_sha(src), quiet=True)
    n = len(server.requests)
    download.fetch(f"{server.url}/eva_vit_g.pth", tmp_path / "f.pth", sha256=_sha(src), quiet=True)
    assert len(server.requests) == n


def test_resume_after_cut_connection(server, served_files, tmp_path):
    name = "blip2_pretrained.pth"
    server.faults[name] = "cut"
    src = served_files / name
    got = download.fetch(f"{server.url}/{name}", tmp_path / name, sha256=_sha(src), quiet=True,
                         sleep=lambda s: None)
    assert got.read_bytes() == src.read_bytes()
    assert server.requests[0] == (name, None)
    # The second request resumed where the first one stopped.
    half = src.stat().st_size // 2
    assert server.requests[1] == (name, f"bytes={half}-")


def test_resume_from_existing_part_file(server, served_files, tmp_path):
    name = "eva_vit_g.pth"
    src = served_files / name
    data = src.read_bytes()
    (tmp_path / (name + ".part")).write_bytes(data[:1000])
    got = download.fetch(f"{server.url}/{name}", tmp_path / name, quiet=True)
    assert got.read_bytes() == data
    assert server.requests == [(name, "bytes=1000-")]


def test_server_ignoring_range_restarts(server, served_files, tmp_path):
    name = "eva_vit_g.pth"
    server.faults[name] = "no_range"
    data = (served_files / name).read_bytes()
    (tmp_path / (name + ".part")).write_bytes(b"garbage" * 10)
    got = download.fetch(f"{server.url}/{name}", tmp_path / name, quiet=True)
    assert got.read_bytes() == data


@pytest.mark.parametrize("code", ["500", "404"])
def test_server_error(server, tmp_path, code):
    name = "blip2_pretrained.pth"
    server.faults[name] = code
    with pytest.raises(download.DownloadError) as e:
        download.fetch(f"{server.url}/{name}", tmp_path / name, retries=2, quiet=True,
                       sleep=lambda s: None)
    assert name in str(e.value) and f"HTTP {code}" in str(e.value)
    assert not (tmp_path / name).exists()
    # 404 is permanent (one request); 500 is retried.
    assert len(server.requests) == (1 if code == "404" else 3)


def test_checksum_mismatch(server, tmp_path):
    name = "blip2_pretrained.pth"
    with pytest.raises(download.IntegrityError) as e:
        download.fetch(f"{server.url}/{name}", tmp_path / name, sha256="0" * 64, quiet=True)
    assert "sha256 mismatch" in str(e.value) and name in str(e.value)
    assert not (tmp_path / name).exists() and not (tmp_path / (name + ".part")).exists()


def test_truncated_transfer_gives_up(server, tmp_path):
    """A server that always cuts the body: the download resumes while it makes progress and
    never renames an incomplete file into place."""
    name = "blip2_pretrained.pth"
    server.faults[name] = "cut_always"
    with pytest.raises(download.DownloadError) as e:
        download.fetch(f"{server.url}/{name}", tmp_path / name, retries=1, quiet=True,
                       sleep=lambda s: None)
    assert name in str(e.value)
    assert not (tmp_path / name).exists()


def test_network_error(tmp_path):
    # A port nothing listens on (bound, then closed).
    import socket
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    with pytest.raises(download.DownloadError) as e:
        download.fetch(f"http://127.0.0.1:{port}/x.pth", tmp_path / "x.pth", retries=1, quiet=True,
                       sleep=lambda s: None)
    assert "x.pth" in str(e.value) and "network error" in str(e.value)


def test_progress_plain_lines(server, served_files, tmp_path):
    """Not a terminal (a CI log): whole lines, no carriage returns, the first and the last."""
    import io
    buf = io.StringIO()
    name = "eva_vit_g.pth"
    download.fetch(f"{server.url}/{name}", tmp_path / name,
                   progress=download.Progress(name, stream=buf, plain_every=0.0))
    out = buf.getvalue()
    lines = out.splitlines()
    assert "\r" not in out and out.endswith("\n") and len(lines) >= 2
    assert all(ln.startswith(f"download: {name}: ") for ln in lines)
    assert " 0%" in lines[0] and "100%" in lines[-1]


def test_progress_resumed_and_throttled(server, served_files, tmp_path):
    import io
    buf = io.StringIO()
    name = "eva_vit_g.pth"
    size = (served_files / name).stat().st_size
    (tmp_path / (name + ".part")).write_bytes((served_files / name).read_bytes()[: size // 2])
    download.fetch(f"{server.url}/{name}", tmp_path / name,
                   progress=download.Progress(name, stream=buf, plain_every=3600.0))
    lines = buf.getvalue().splitlines()
    assert len(lines) == 2  # the start (at the resumed offset) and the end, nothing between
    assert " 50%" in lines[0] and "100%" in lines[1]


def test_sha256_file(tmp_path):
    p = tmp_path / "f"
    p.write_bytes(b"abc" * 100_000)
    assert download.sha256_file(p) == hashlib.sha256(b"abc" * 100_000).hexdigest()
