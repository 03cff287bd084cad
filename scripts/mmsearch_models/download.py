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
import shutil
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Callable, Optional

from tqdm import tqdm
from tqdm.utils import CallbackIOWrapper

CHUNK = 1 << 20


class DownloadError(Exception):
    """Network failure or server error (the file could not be fetched)."""


class IntegrityError(DownloadError):
    """The bytes arrived but are wrong: truncated, too long, or a sha256 mismatch."""


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file (the one helper for downloads, bundle manifests and checkpoints)."""
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


class _LogLines(tqdm):
    """tqdm for a log file or pipe: every refresh is a plain line of its own (no '\\r', no
    clearing), so a CI log gets a line at the start, one every `mininterval` s and the last."""

    def display(self, msg=None, pos=None):
        if msg != "":  # '' asks to erase the bar, which a log cannot
            self.fp.write((msg or self.__str__()) + "\n")
            self.fp.flush()
        return False

    def clear(self, nolock=False):
        pass


class Progress:
    """Where and how often to show download progress: a tqdm bar on a terminal, otherwise
    (pipes, CI logs) plain lines every `plain_every` seconds, the first and last included."""

    def __init__(self, label: str, stream=None, plain_every: float = 10.0):
        self.label = label
        self.stream = stream if stream is not None else sys.stderr
        self.plain_every = plain_every

    def bar(self, done: int, total: Optional[int]) -> tqdm:
        tty = hasattr(self.stream, "isatty") and self.stream.isatty()
        return (tqdm if tty else _LogLines)(
            desc=f"download: {self.label}", total=total, initial=done, unit="B", unit_scale=True,
            unit_divisor=1024, file=self.stream, mininterval=0.2 if tty else self.plain_every,
            ascii=not tty, dynamic_ncols=tty, leave=tty)


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
        bar = progress.bar(offset, total) if progress is not None else tqdm(disable=True)
        with bar, open(part, "ab" if offset else "wb") as f:
            try:
                shutil.copyfileobj(CallbackIOWrapper(bar.update, resp, "read"), f, CHUNK)
            except (OSError, http.client.HTTPException) as e:  # IncompleteRead, reset, timeout
                raise DownloadError(f"{name}: connection lost after {f.tell()} bytes: {e}")
            done = f.tell()
            bar.refresh()  # the last line, also where updates were throttled
    if total is None:
        total = expected_size
    if total is not None and done < total:
        raise DownloadError(f"{name}: connection closed after {done} of {total} bytes")
    if total is not None and done > total:
        part.unlink()
        raise IntegrityError(f"{name}: received {done} bytes, more than the {total} announced")
