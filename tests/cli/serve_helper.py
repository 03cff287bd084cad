"""Starting and talking to a real `mmsearch serve` on a free loopback port (tests of issue 13)."""
import json
import os
import shutil
import signal
import subprocess
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
DISHES = REPO / "data" / "dishes"


def copy_dishes(target: Path) -> Path:
    """The demo dishes (68 photos, captions, 4 categories) in a folder the test owns."""
    shutil.copytree(DISHES, target)
    return target


class Served:
    """A running `mmsearch serve`; stop() sends SIGTERM and returns (exit code, stderr)."""

    def __init__(self, binary, home, folders, models=None, extra=(), env=None):
        full_env = dict(os.environ)
        full_env.update({"MMSEARCH_HOME": str(home), "OMP_NUM_THREADS": "1",
                         "MMSEARCH_DTYPE": "fp32"})
        full_env.pop("MMSEARCH_MODELS", None)
        full_env.pop("MMSEARCH_DEFAULT_MODEL", None)
        full_env.update(env or {})
        argv = [str(binary)]
        if models is not None:
            argv += ["--models", str(models)]
        argv += ["serve", *map(str, folders), "--port", "0", "--json", *map(str, extra)]
        self.stderr_path = Path(home).parent / f"serve-{uuid.uuid4().hex[:8]}.log"
        self.stderr_file = open(self.stderr_path, "w")
        self.proc = subprocess.Popen(argv, env=full_env, stdout=subprocess.PIPE,
                                     stderr=self.stderr_file, text=True)
        line = self.proc.stdout.readline()
        if not line:
            self.proc.wait(timeout=30)
            raise AssertionError(f"serve did not start ({self.proc.returncode}):\n"
                                 f"{self.stderr_path.read_text()}")
        self.info = json.loads(line)
        self.port = self.info["port"]
        self.base = f"http://127.0.0.1:{self.port}"
        self.token = self.info.get("token")

    def request(self, path, body=None, headers=None, method=None, timeout=60):
        """(status, headers, bytes) of one request; never raises for an HTTP status."""
        headers = dict(headers or {})
        if self.token and "Authorization" not in headers:
            headers["Authorization"] = f"Bearer {self.token}"
        data = body
        if isinstance(body, (dict, list)):
            data = json.dumps(body).encode()
            headers.setdefault("Content-Type", "application/json")
        elif isinstance(body, str):
            data = body.encode()
        req = urllib.request.Request(self.base + path, data=data, headers=headers, method=method)
        try:
            with urllib.request.urlopen(req, timeout=timeout) as response:
                return response.status, dict(response.headers), response.read()
        except urllib.error.HTTPError as e:
            return e.code, dict(e.headers), e.read()

    def json(self, path, body=None, expect=200, **kwargs):
        status, _, data = self.request(path, body, **kwargs)
        assert status == expect, f"{path} gave {status}, expected {expect}: {data[:2000]!r}"
        return json.loads(data)

    def __enter__(self):
        return self

    def __exit__(self, kind, value, traceback):
        """Stops the server; when the block passed, it must have exited 0."""
        code, log = self.stop()
        if kind is None:
            assert code == 0, log
        return False

    def stop(self, sig=signal.SIGTERM, timeout=30):
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            code = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            code = self.proc.wait()
        self.stderr_file.close()
        return code, self.stderr_path.read_text()


def multipart(fields):
    """(body, content type) for fields {name: (filename or None, bytes, type)}."""
    boundary = "mmsearch" + uuid.uuid4().hex
    parts = []
    for name, (filename, data, mime) in fields.items():
        disposition = f'form-data; name="{name}"'
        if filename:
            disposition += f'; filename="{filename}"'
        parts.append((f"--{boundary}\r\nContent-Disposition: {disposition}\r\n"
                      f"Content-Type: {mime}\r\n\r\n").encode() + data + b"\r\n")
    body = b"".join(parts) + f"--{boundary}--\r\n".encode()
    return body, f"multipart/form-data; boundary={boundary}"


def wait_until(predicate, timeout=30.0, step=0.1):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(step)
    return predicate()
