"""Resumable HTTP(S) downloads with length and sha256 verification (urllib only).

`fetch(url, dest)` downloads into `dest.part`, resuming an existing `.part` with an HTTP
Range request, checks the length announced by the server (Content-Length / Content-Range)
and, when given, the sha256, and only then renames the file to `dest`. Every failure raises
`DownloadError` whose message names the file and the reason in one line.
"""
from __future__ import annotations

import hashlib
import http.client
import os
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Callable, Optional

CHUNK = 1 << 20


class DownloadError(Exception):
    """Network failure or server error (the file could not be fetched)."""


class IntegrityError(DownloadError):
    """The bytes arrived but are wrong: truncated, too long, or a sha256 mismatch."""


def sha256_file(path: Path, chunk: int = CHUNK) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while True:
            b = f.read(chunk)
            if not b:
                break
            h.update(b)
    return h.hexdigest()


def _fmt_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(n) < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GiB"


class Progress:
    """Progress on a stream: a rewritten line with rate and ETA on a TTY, otherwise a plain
    line every `plain_every` seconds (and one at the end)."""

    def __init__(self, label: str, stream=None, plain_every: float = 10.0):
        self.label = label
        self.stream = stream if stream is not None else sys.stderr
        self.tty = hasattr(self.stream, "isatty") and self.stream.isatty()
        self.plain_every = plain_every
        self.t0 = time.monotonic()
        self.last = 0.0
        self.start_bytes = 0

    def start(self, done: int, total: Optional[int]) -> None:
        self.start_bytes = done
        what = f"{_fmt_bytes(total)}" if total else "unknown size"
        resume = f", resuming at {_fmt_bytes(done)}" if done else ""
        self.stream.write(f"download: {self.label} ({what}{resume})\n")
        self.stream.flush()

    def update(self, done: int, total: Optional[int], final: bool = False) -> None:
        now = time.monotonic()
        if not final and now - self.last < (0.2 if self.tty else self.plain_every):
            return
        self.last = now
        elapsed = max(now - self.t0, 1e-6)
        rate = (done - self.start_bytes) / elapsed
        pct = f"{100.0 * done / total:5.1f}% " if total else ""
        eta = ""
        if total and rate > 0 and not final:
            secs = int((total - done) / rate)
            eta = f" ETA {secs // 3600:d}:{secs // 60 % 60:02d}:{secs % 60:02d}"
        tot = f"/{_fmt_bytes(total)}" if total else ""
        msg = f"{self.label}: {pct}{_fmt_bytes(done)}{tot} {_fmt_bytes(rate)}/s{eta}"
        if self.tty:
            self.stream.write("\r\x1b[K" + msg + ("\n" if final else ""))
        else:
            self.stream.write(msg + "\n")
        self.stream.flush()


def _total_from_headers(resp, offset: int) -> Optional[int]:
    cr = resp.headers.get("Content-Range")
    if cr and "/" in cr:
        tail = cr.rsplit("/", 1)[1].strip()
        if tail.isdigit():
            return int(tail)
    cl = resp.headers.get("Content-Length")
    if cl is not None and cl.strip().isdigit():
        return int(cl) + (offset if resp.status == 206 else 0)
    return None


def fetch(
    url: str,
    dest: Path,
    sha256: Optional[str] = None,
    expected_size: Optional[int] = None,
    retries: int = 3,
    timeout: float = 60.0,
    backoff: float = 1.0,
    progress: Optional[Progress] = None,
    quiet: bool = False,
    sleep: Callable[[float], None] = time.sleep,
) -> Path:
    """Download `url` to `dest` (resumable through `dest.part`). Returns `dest`.

    An existing `dest` is reused when its sha256 (if known) matches; otherwise it is
    re-downloaded. Raises DownloadError (network / HTTP) or IntegrityError (length, sha256).
    """
    dest = Path(dest)
    name = dest.name
    dest.parent.mkdir(parents=True, exist_ok=True)
    if dest.exists():
        if sha256 is None or sha256_file(dest) == sha256.lower():
            return dest
        dest.unlink()  # a stale / corrupt cached copy: fetch again
    part = dest.with_name(dest.name + ".part")
    if progress is None and not quiet:
        progress = Progress(name)
    attempt = 0
    total_attempts = 0
    while True:
        attempt += 1
        total_attempts += 1
        before = part.stat().st_size if part.exists() else 0
        try:
            _fetch_once(url, part, name, timeout, progress, expected_size)
            break
        except IntegrityError:
            raise
        except DownloadError as e:
            # Client errors (4xx, except 408/429) will not get better by retrying.
            if getattr(e, "permanent", False):
                raise
            if part.exists() and part.stat().st_size > before and total_attempts < 100:
                attempt = 0  # progress was made: a cut connection, resume without penalty
            elif attempt > retries:
                raise
            if not quiet:
                what = "resuming" if attempt == 0 else f"retry {attempt}/{retries}"
                sys.stderr.write(f"download: {e}; {what}\n")
            sleep(backoff * attempt)
    if sha256 is not None:
        got = sha256_file(part)
        if got != sha256.lower():
            part.unlink()
            raise IntegrityError(f"{name}: sha256 mismatch (expected {sha256.lower()}, got {got}); "
                                 f"the partial file was deleted")
    os.replace(part, dest)
    return dest


def _fetch_once(url, part: Path, name: str, timeout: float, progress: Optional[Progress],
                expected_size: Optional[int]) -> None:
    offset = part.stat().st_size if part.exists() else 0
    req = urllib.request.Request(url, headers={"User-Agent": "mmsearch-export/1"})
    if offset:
        req.add_header("Range", f"bytes={offset}-")
    try:
        resp = urllib.request.urlopen(req, timeout=timeout)
    except urllib.error.HTTPError as e:
        if e.code == 416 and offset:
            # Range not satisfiable: the .part is already complete, or longer than the file.
            total = None
            cr = e.headers.get("Content-Range") if e.headers else None
            if cr and "/" in cr and cr.rsplit("/", 1)[1].strip().isdigit():
                total = int(cr.rsplit("/", 1)[1])
            if total == offset:
                return
            part.unlink()
            err = DownloadError(f"{name}: server refused to resume (HTTP 416); partial file discarded")
            raise err
        err = DownloadError(f"{name}: HTTP {e.code} {e.reason} from {url}")
        err.permanent = 400 <= e.code < 500 and e.code not in (408, 429)
        raise err
    except (urllib.error.URLError, OSError, http.client.HTTPException) as e:
        reason = getattr(e, "reason", e)
        raise DownloadError(f"{name}: network error fetching {url}: {reason}")
    with resp:
        if offset and resp.status != 206:
            offset = 0  # the server ignored Range: start over
        total = _total_from_headers(resp, offset)
        if total is not None and expected_size is not None and total != expected_size:
            raise IntegrityError(f"{name}: server announces {total} bytes, expected {expected_size}")
        if progress is not None:
            progress.start(offset, total)
        done = offset
        try:
            with open(part, "ab" if offset else "wb") as f:
                while True:
                    b = resp.read(CHUNK)
                    if not b:
                        break
                    f.write(b)
                    done += len(b)
                    if progress is not None:
                        progress.update(done, total)
        except (OSError, http.client.HTTPException) as e:  # IncompleteRead, reset, timeout
            raise DownloadError(f"{name}: connection lost after {done} bytes: {e}")
        if progress is not None:
            progress.update(done, total, final=True)
    if total is None:
        total = expected_size
    if total is not None and done < total:
        raise DownloadError(f"{name}: connection closed after {done} of {total} bytes")
    if total is not None and done > total:
        part.unlink()
        raise IntegrityError(f"{name}: received {done} bytes, more than the {total} announced")
