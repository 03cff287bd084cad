"""Hostile arguments (issue 12): query images that are not image files, and option values that
used to be accepted silently or reported badly. Each must be a clean error with the documented
exit code (2 usage, 3 input), named by its flag or file, and nothing may hang or allocate
without bound.
"""
import os
import time

import pytest

from test_cli_search import EXIT_INPUT, EXIT_PARTIAL, EXIT_USAGE, save_image, summary


@pytest.fixture
def indexed(run, tmp_path):
    photos = tmp_path / "photos"
    for i, kind in enumerate(["red", "checker"]):
        save_image(photos / f"{kind}.png", kind, seed=i)
    run("index", photos, "--model", "blip-base", "-q", check=0)
    return photos


def query_image(run, photos, image):
    started = time.monotonic()
    proc = run("query", "--image", image, "--in", photos, "--model", "blip-base", timeout=60)
    return proc, time.monotonic() - started


def test_query_images_that_are_not_image_files_are_refused_at_once(run, indexed, tmp_path):
    odd = tmp_path / "odd"
    odd.mkdir()
    (odd / "zero.jpg").symlink_to("/dev/zero")
    os.mkfifo(odd / "pipe.jpg")
    (odd / "folder.jpg").mkdir()
    cases = {"zero.jpg": "not a regular file", "pipe.jpg": "not a regular file",
             "folder.jpg": "is a folder"}
    for name, reason in cases.items():
        proc, seconds = query_image(run, indexed, odd / name)
        assert proc.returncode == EXIT_INPUT, (name, proc.stderr)
        assert reason in proc.stderr and name in proc.stderr, proc.stderr
        assert "internal" not in proc.stderr.lower()
        assert seconds < 30, f"{name} took {seconds:.1f} s"


def test_a_huge_file_is_refused_by_its_size_before_it_is_read(run, indexed, tmp_path):
    huge = tmp_path / "huge.jpg"
    with open(huge, "wb") as f:  # sparse: no disk used, 2 GB claimed
        f.write(b"\xff\xd8\xff")
        f.truncate(2 << 30)
    proc, seconds = query_image(run, indexed, huge)
    assert proc.returncode == EXIT_INPUT, proc.stderr
    assert "bytes" in proc.stderr and "--max-pixels" in proc.stderr
    assert seconds < 30


def test_a_decompression_bomb_names_the_flag_that_allows_it(run, tmp_path):
    photos = tmp_path / "photos"
    save_image(photos / "a.png", "red", seed=1, size=64)
    s = summary(run, photos, "--model", "blip-base", "--max-pixels", "100", expect=EXIT_PARTIAL)
    assert "--max-pixels" in s["failures"][0]["reason"]


@pytest.mark.parametrize("argv, flag", [
    (["index", "{photos}", "--max-pixels", "0"], "--max-pixels"),
    (["index", "{photos}", "--max-pixels", "-1"], "--max-pixels"),
    (["query", "--text", "x", "--in", "{photos}", "--threshold", "nan"], "--threshold"),
    (["query", "--text", "", "--in", "{photos}"], "--text"),
    (["query", "--text", "   ", "--in", "{photos}"], "--text"),
    (["query", "--text", "x", "--in", "{photos}", "--montage", ""], "--montage"),
    (["query", "--text", "caf\udcff", "--in", "{photos}"], "--text"),  # byte 0xff: not UTF-8
    (["--threads", "-1", "query", "--text", "x", "--in", "{photos}"], "--threads"),
])
def test_bad_values_are_usage_errors_naming_the_flag(run, indexed, argv, flag):
    args = [a.replace("{photos}", str(indexed)) for a in argv]
    proc = run(*args)
    assert proc.returncode == EXIT_USAGE, proc.stderr
    assert flag in proc.stderr, proc.stderr
    assert len(proc.stderr) < 400, proc.stderr  # no 300-digit range in the message
