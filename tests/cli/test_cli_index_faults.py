"""`mmsearch index` against folders that lie (issue 12): an unmounted drive, files that stopped
being images, files excluded now, unreadable files and folders, a link to a parent folder and a
FIFO. Nothing indexed may be lost without a word, or kept stale without one.
"""
import json
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

from test_cli_search import (EXIT_INPUT, EXIT_OK, EXIT_PARTIAL, indexed_paths, save_image,
                             summary)


def make_images(folder: Path, count: int, start: int = 0) -> Path:
    kinds = ["red", "checker", "gradient", "stripes", "blue"]
    for i in range(start, start + count):
        save_image(folder / f"{kinds[i % len(kinds)]}_{i}.png", kinds[i % len(kinds)], seed=i)
    return folder


def test_an_emptied_folder_is_not_taken_for_deleted_photos(run, tmp_path):
    # What an unmounted drive looks like: the mount point is there, and empty.
    photos = make_images(tmp_path / "photos", 4)
    summary(run, photos, "--model", "blip-base")
    away = tmp_path / "away"
    shutil.move(str(photos), str(away))
    photos.mkdir()

    proc = run("index", photos, "--model", "blip-base")
    assert proc.returncode == EXIT_INPUT, proc.stderr
    assert "would remove 4 of the 4" in proc.stderr and "mounted" in proc.stderr
    assert "--confirm-removal" in proc.stderr and "Nothing was changed" in proc.stderr
    assert len(indexed_paths(run, photos)) == 4  # the vectors are all still there

    # The drive comes back: nothing to do.
    photos.rmdir()
    shutil.move(str(away), str(photos))
    s = summary(run, photos, "--model", "blip-base")
    assert (s["unchanged"], s["removed"]) == (4, 0)

    # Really gone: the user confirms.
    shutil.rmtree(photos)
    photos.mkdir()
    s = summary(run, photos, "--model", "blip-base", "--confirm-removal")
    assert s["removed"] == 4
    assert "not been indexed" in run("query", "--text", "x", "--in", photos).stderr


def test_removing_most_of_a_folder_needs_confirmation_and_a_few_do_not(run, tmp_path):
    photos = make_images(tmp_path / "photos", 20)
    summary(run, photos, "--model", "blip-base")
    files = sorted(photos.iterdir())
    for f in files[:3]:
        f.unlink()
    s = summary(run, photos, "--model", "blip-base")
    assert s["removed"] == 3 and len(indexed_paths(run, photos)) == 17

    for f in files[3:14]:  # 11 of the 17 left
        f.unlink()
    proc = run("index", photos, "--model", "blip-base")
    assert proc.returncode == EXIT_INPUT and "would remove 11 of the 17" in proc.stderr
    assert len(indexed_paths(run, photos)) == 17
    s = summary(run, photos, "--model", "blip-base", "--confirm-removal")
    assert s["removed"] == 11 and len(indexed_paths(run, photos)) == 6


def test_a_file_that_is_no_longer_an_image_is_reported_and_leaves(run, tmp_path):
    photos = make_images(tmp_path / "photos", 3)
    summary(run, photos, "--model", "blip-base")
    victim = photos / "red_0.png"
    victim.write_text("overwritten by a text editor\n")
    s = summary(run, photos, "--model", "blip-base", expect=EXIT_PARTIAL)
    assert s["failed"] == 1 and s["failures"][0]["path"] == str(victim)
    assert "not an image" in s["failures"][0]["reason"]
    assert str(victim) not in indexed_paths(run, photos)
    # An empty file named like a photo, and one that is random bytes, are reported too.
    (photos / "empty.jpg").write_bytes(b"")
    (photos / "noise.jpg").write_bytes(os.urandom(1 << 16))
    s = summary(run, photos, "--model", "blip-base", expect=EXIT_PARTIAL)
    assert {Path(f["path"]).name for f in s["failures"]} == {"red_0.png", "empty.jpg",
                                                             "noise.jpg"}


def test_files_excluded_now_leave_the_index_and_are_counted(run, tmp_path):
    photos = make_images(tmp_path / "photos", 2)
    make_images(photos / ".thumbs", 1, start=7)
    s = summary(run, photos, "--model", "blip-base", "--hidden")
    assert s["indexed"] == 3
    s = summary(run, photos, "--model", "blip-base")
    assert s["removed"] == 1 and s["unchanged"] == 2
    assert not any("/.thumbs/" in p for p in indexed_paths(run, photos))


def test_a_link_to_a_parent_folder_does_not_pull_in_the_tree_around(run, tmp_path):
    outer = tmp_path / "outer"
    make_images(outer, 2)
    photos = make_images(outer / "photos", 2, start=5)
    (photos / "up").symlink_to(outer, target_is_directory=True)
    (photos / "here").symlink_to(photos, target_is_directory=True)
    proc = run("index", photos, "--model", "blip-base", "--json", check=EXIT_OK)
    s = json.loads(proc.stdout)
    assert s["found"] == 2 and s["indexed"] == 2
    assert "contains the indexed folder" in proc.stderr
    assert all(p.startswith(str(photos) + "/") for p in indexed_paths(run, photos))


def test_a_fifo_named_like_a_photo_does_not_hang_the_walk(run, tmp_path):
    photos = make_images(tmp_path / "photos", 1)
    os.mkfifo(photos / "pipe.jpg")
    s = summary(run, photos, "--model", "blip-base", timeout=60)
    assert (s["found"], s["indexed"]) == (1, 1)


def _as_nobody():
    if os.geteuid() != 0 or shutil.which("setpriv") is None:
        pytest.skip("needs root and setpriv to run mmsearch as an unprivileged user")
    return ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]


def test_unreadable_files_are_reported_and_unreadable_folders_keep_their_vectors(run, tmp_path):
    prefix = _as_nobody()
    # pytest's own temp folders are private to root: this one must be reachable by that user.
    base = Path(tempfile.mkdtemp(prefix="mmsearch-unreadable-"))
    base.chmod(0o755)
    try:
        _check_unreadable(run, prefix, base)
    finally:
        for path in base.rglob("*"):
            if path.is_dir() and not path.is_symlink():
                path.chmod(0o777)
        shutil.rmtree(base)


def _check_unreadable(run, prefix, tmp_path):
    photos = make_images(tmp_path / "photos", 2)
    make_images(photos / "private", 2, start=3)
    home = tmp_path / "home"
    home.mkdir()
    models = tmp_path / "models"  # the build tree may not be readable by that user
    shutil.copytree(run.models / "blip-base", models / "blip-base")
    for path in [photos, home, *photos.rglob("*"), *models.rglob("*"), models]:
        path.chmod(0o777 if path.is_dir() else 0o666)
    env = dict(os.environ, MMSEARCH_HOME=str(home), OMP_NUM_THREADS="1", MMSEARCH_DTYPE="fp32")

    def index(*extra):
        argv = prefix + [str(run.binary), "--models", str(models), "index", str(photos),
                         "--model", "blip-base", "--json", *extra]
        return subprocess.run(argv, capture_output=True, text=True, env=env, timeout=120)

    first = index()
    assert first.returncode == EXIT_OK, first.stderr
    assert json.loads(first.stdout)["indexed"] == 4

    (photos / "private").chmod(0o000)
    (photos / "red_0.png").chmod(0o000)
    try:
        proc = index()
        assert proc.returncode == EXIT_PARTIAL, proc.stderr
        s = json.loads(proc.stdout)
        assert s["removed"] == 0, s  # the two photos under private/ are kept
        assert [Path(f["path"]).name for f in s["failures"]] == ["red_0.png"]
        assert "cannot read" in s["failures"][0]["reason"]
        assert "Permission denied" in s["failures"][0]["reason"]
        assert "private" in proc.stderr and "cannot read folder" in proc.stderr
    finally:
        (photos / "private").chmod(0o777)
        (photos / "red_0.png").chmod(0o666)
    kept = {Path(p).name for p in indexed_paths(run.__class__(run.binary, home, models), photos)}
    assert {"stripes_3.png", "blue_4.png"} <= kept


def test_paths_that_are_not_utf8_survive_json_and_paths0(run, tmp_path):
    photos = tmp_path / "photos"
    odd = Path(os.fsdecode(bytes(photos) + b"/caf\xe9"))
    save_image(odd / os.fsdecode(b"p\xe9.png"), "red", seed=1)
    save_image(photos / "line\nbreak.png", "checker", seed=2)
    s = summary(run, photos, "--model", "blip-base")
    assert s["indexed"] == 2
    out = json.loads(run("query", "--text", "x", "--in", photos, "--model", "blip-base",
                         "--json", check=EXIT_OK).stdout)
    import base64
    exact = {base64.b64decode(r["path_bytes"]) if "path_bytes" in r else r["path"].encode()
             for r in out["results"]}
    assert exact == {bytes(photos) + b"/caf\xe9/p\xe9.png", bytes(photos) + b"/line\nbreak.png"}
    argv = [str(run.binary), "--models", str(run.models), "query", "--text", "x", "--in",
            str(photos), "--model", "blip-base", "--paths0"]
    env = dict(os.environ, MMSEARCH_HOME=str(run.home), OMP_NUM_THREADS="1",
               MMSEARCH_DTYPE="fp32")
    raw = subprocess.run(argv, capture_output=True, env=env, timeout=60, check=True).stdout
    assert set(raw.split(b"\0")[:-1]) == exact and raw.endswith(b"\0")
