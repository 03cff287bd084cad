"""`mmsearch query --preview` (issue 13): thumbnails inline in the terminal, or the plain table."""
import base64
import io
import re
import shutil

import pytest
from PIL import Image

from serve_helper import copy_dishes

MODEL = "dishes-tiny"


@pytest.fixture
def dishes(run, tmp_path):
    d = copy_dishes(tmp_path / "dishes")
    run("index", d, "--model", MODEL, check=0)
    return d


def rows(stdout):
    return [line for line in stdout.splitlines() if re.match(r"^\d+\s+\d\.\d{4}", line)]


def test_kitty_protocol_carries_a_png_per_result(run, dishes):
    proc = run("query", "--in", dishes, "-t", "a pizza", "-k", "3", "--preview", "kitty", check=0)
    images = re.findall(rb"\x1b_G([^;]*);([A-Za-z0-9+/=]*)\x1b\\", proc.stdout.encode())
    # Each image starts with a=T (transmit and show) and ends with m=0; chunks are <= 4096.
    starts = [i for i, (keys, _) in enumerate(images) if keys.startswith(b"a=T,f=100")]
    assert len(starts) == 3 and len(rows(proc.stdout)) == 3
    assert all(len(data) <= 4096 for _, data in images)
    first = b"".join(data for _, data in images[starts[0]:starts[1]])
    picture = Image.open(io.BytesIO(base64.b64decode(first)))
    # Fitted within 192 px, never enlarged (the demo photos are 128 px).
    assert picture.format == "PNG" and picture.size == (128, 128)


def test_iterm_protocol(run, dishes):
    proc = run("query", "--in", dishes, "-t", "a pizza", "-k", "2", "--preview", "iterm", check=0)
    found = re.findall(r"\x1b\]1337;File=inline=1;size=(\d+);[^:]*:([A-Za-z0-9+/=]+)\x07",
                       proc.stdout)
    assert len(found) == 2
    size, data = found[0]
    assert len(base64.b64decode(data)) == int(size)


@pytest.mark.skipif(shutil.which("img2sixel") is None, reason="needs img2sixel (libsixel-bin)")
def test_sixel_through_img2sixel(run, dishes):
    proc = run("query", "--in", dishes, "-t", "a pizza", "-k", "2", "--preview", "sixel", check=0)
    # DCS ... q starts a sixel image, ST ends it.
    assert len(re.findall(r"\x1bP[0-9;]*q", proc.stdout)) == 2
    assert len(rows(proc.stdout)) == 2


def test_auto_falls_back_to_the_table_off_a_terminal(run, dishes):
    proc = run("query", "--in", dishes, "-t", "a pizza", "-k", "2", "--preview", check=0,
               env={"TERM": "xterm-kitty"})
    assert "\x1b" not in proc.stdout and len(rows(proc.stdout)) == 2
    assert "not a terminal" in proc.stderr


def test_bad_preview_values(run, dishes):
    proc = run("query", "--in", dishes, "-t", "a pizza", "--preview=bogus", check=2)
    assert "auto, kitty, iterm, sixel, none" in proc.stderr
    proc = run("query", "--in", dishes, "-t", "a pizza", "--preview", "kitty", "--json", check=2)
    assert "--preview" in proc.stderr
    proc = run("query", "--in", dishes, "-t", "a pizza", "--preview", "sixel", check=2,
               env={"PATH": "/nonexistent"})
    assert "img2sixel" in proc.stderr
