"""The store under bad disks and bad luck (issue 12): a read-only store, a full disk, two first
runs at once, and damaged files. Every case runs the real binary; the disk cases use a small
tmpfs, which needs root, and are skipped with a message where one cannot be mounted.

What must hold throughout: a healthy store is never called corrupt, "damaged" is said only
after SQLite's own check, the advice never deletes anything, and what was committed survives.
"""
import hashlib
import json
import os
import subprocess
from pathlib import Path

import pytest

from conftest import Runner
from test_cli_search import EXIT_INDEX, EXIT_OK, save_image


def make_images(folder: Path, count: int) -> Path:
    kinds = ["red", "checker", "gradient", "stripes", "blue"]
    for i in range(count):
        save_image(folder / f"{kinds[i % len(kinds)]}_{i}.png", kinds[i % len(kinds)], seed=i)
    return folder


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def assert_not_called_corrupt(stderr: str):
    lowered = stderr.lower()
    assert "corrupt" not in lowered and "damaged" not in lowered, stderr
    assert "move it away" not in lowered, stderr


class Tmpfs:
    """A tmpfs of a given size at `where`, resizable and remountable read-only."""

    def __init__(self, where: Path, size: str):
        self.where = where
        where.mkdir(parents=True, exist_ok=True)
        proc = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where)],
                              capture_output=True, text=True)
        if proc.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs here (needs root): {proc.stderr.strip()}")

    def remount(self, options: str):
        subprocess.run(["mount", "-o", f"remount,{options}", str(self.where)], check=True)

    def unmount(self):
        subprocess.run(["umount", "-l", str(self.where)], capture_output=True)


@pytest.fixture
def tmpfs(tmp_path):
    mounted = []

    def mount(size: str) -> Tmpfs:
        fs = Tmpfs(tmp_path / f"mnt{len(mounted)}", size)
        mounted.append(fs)
        return fs

    yield mount
    for fs in mounted:
        fs.unmount()


def runner_at(run, home: Path) -> Runner:
    return Runner(run.binary, home, run.models)


def test_a_read_only_store_is_read_and_index_says_why(run, tmp_path, tmpfs):
    photos = make_images(tmp_path / "photos", 3)
    disk = tmpfs("16m")
    on_disk = runner_at(run, disk.where / "home")
    on_disk("index", photos, "--model", "blip-base", "-q", check=EXIT_OK)
    before = on_disk.json("query", "--text", "a red picture", "--in", photos, "--model",
                          "blip-base", "--json")
    disk.remount("ro")

    # Reads work as before: same results.
    after = on_disk.json("query", "--text", "a red picture", "--in", photos, "--model",
                         "blip-base", "--json")
    assert [r["path"] for r in after["results"]] == [r["path"] for r in before["results"]]
    assert_not_called_corrupt(on_disk("query", "--text", "x", "--in", photos, "--model",
                                      "blip-base", check=EXIT_OK).stderr)

    # An index run with nothing to change needs no write, and succeeds.
    on_disk("index", photos, "--model", "blip-base", check=EXIT_OK)
    # One that must write says the store is not writable there, and that reads still work.
    save_image(photos / "new.png", "blue", seed=99)
    proc = on_disk("index", photos, "--model", "blip-base", check=EXIT_INDEX)
    assert_not_called_corrupt(proc.stderr)
    assert "not writable" in proc.stderr, proc.stderr
    assert "query" in proc.stderr and "MMSEARCH_HOME" in proc.stderr
    after = on_disk.json("query", "--text", "a red picture", "--in", photos, "--model",
                         "blip-base", "--json")
    assert len(after["results"]) == 3


def test_a_store_whose_log_was_folded_in_is_read_from_a_read_only_disk(run, tmp_path, tmpfs):
    # No -wal/-shm beside it (the indexer's close removes them): SQLite cannot create the -shm a
    # WAL reader needs, so mmsearch reads it as immutable.
    photos = make_images(tmp_path / "photos", 2)
    disk = tmpfs("16m")
    on_disk = runner_at(run, disk.where / "home")
    on_disk("index", photos, "--model", "blip-base", "-q", check=EXIT_OK)
    assert not (disk.where / "home" / "index.sqlite3-wal").exists()
    disk.remount("ro")
    results = on_disk.json("query", "--text", "x", "--in", photos, "--model", "blip-base",
                           "--json")["results"]
    assert len(results) == 2
    save_image(photos / "new.png", "blue", seed=99)
    proc = on_disk("index", photos, "--model", "blip-base", check=EXIT_INDEX)
    assert_not_called_corrupt(proc.stderr)
    assert "not writable" in proc.stderr and "Read-only file system" in proc.stderr


def test_disk_full_says_so_keeps_what_was_committed_and_resumes(run, tmp_path, tmpfs):
    photos = make_images(tmp_path / "photos", 40)
    disk = tmpfs("100k")
    home = disk.where / "home"
    on_disk = runner_at(run, home)

    # Full before the store exists: no half-made store is left behind.
    proc = on_disk("index", photos, "--model", "blip-base", check=EXIT_INDEX)
    assert "disk full" in proc.stderr and "No space left on device" in proc.stderr
    assert str(home / "index.sqlite3") in proc.stderr and ".new-" not in proc.stderr
    assert not [p.name for p in home.iterdir() if p.name.startswith("index.sqlite3")]
    proc = on_disk("query", "--text", "x", "--in", photos, "--model", "blip-base")
    assert proc.returncode == EXIT_INDEX and "nothing has been indexed" in proc.stderr
    assert_not_called_corrupt(proc.stderr)

    # Room for the store and some batches: full part-way through.
    disk.remount("size=700k")
    proc = on_disk("index", photos, "--model", "blip-base", "--batch-size", "4",
                   check=EXIT_INDEX)
    assert "disk full" in proc.stderr and "resumes" in proc.stderr
    assert_not_called_corrupt(proc.stderr)
    committed = on_disk.json("query", "--text", "x", "--in", photos, "--model", "blip-base",
                             "-k", "100", "--json")["results"]
    assert 0 < len(committed) < 40

    # Space again: the run resumes, reusing what was committed.
    disk.remount("size=32m")
    proc = on_disk("index", photos, "--model", "blip-base", "--batch-size", "4", "--json",
                   check=EXIT_OK)
    summary = json.loads(proc.stdout)
    assert summary["unchanged"] == len(committed) and summary["indexed"] == 40 - len(committed)
    done = on_disk.json("query", "--text", "x", "--in", photos, "--model", "blip-base", "-k",
                        "100", "--json")["results"]
    assert len(done) == 40


def test_first_runs_started_together_both_succeed(run, tmp_path):
    photos = make_images(tmp_path / "photos", 2)
    env = dict(os.environ, OMP_NUM_THREADS="1", MMSEARCH_DTYPE="fp32")
    for trial in range(5):
        home = tmp_path / f"home{trial}"
        env["MMSEARCH_HOME"] = str(home)
        argv = [str(run.binary), "--models", str(run.models), "index", str(photos), "--model",
                "blip-base", "-q"]
        procs = [subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                  text=True) for _ in range(2)]
        for p in procs:
            out, err = p.communicate(timeout=120)
            assert p.returncode == 0, f"trial {trial}: exit {p.returncode}\n{err}"
        leftovers = [p.name for p in home.iterdir() if ".new-" in p.name]
        assert not leftovers, leftovers
        results = runner_at(run, home).json("query", "--text", "x", "--in", photos, "--model",
                                            "blip-base", "--json")["results"]
        assert len(results) == 2


def test_a_damaged_store_is_checked_before_it_is_called_damaged(run, tmp_path):
    photos = make_images(tmp_path / "photos", 3)
    run("index", photos, "--model", "blip-base", "-q", check=EXIT_OK)
    store = run.home / "index.sqlite3"
    data = bytearray(store.read_bytes())
    page = 16384
    assert len(data) >= 3 * page
    # Scramble the second page (a b-tree page of the schema's tables), keep the header.
    data[page:2 * page] = bytes((i * 151 + 7) % 256 for i in range(page))
    store.write_bytes(bytes(data))
    digest = sha256(store)

    proc = run("query", "--text", "x", "--in", photos, "--model", "blip-base")
    assert proc.returncode == EXIT_INDEX, proc.stderr
    assert "damaged" in proc.stderr and "quick_check" in proc.stderr, proc.stderr
    assert "re-index into a new store" in proc.stderr and "MMSEARCH_HOME" in proc.stderr
    assert "move it away" not in proc.stderr and "delete" not in proc.stderr.lower()
    proc = run("index", photos, "--model", "blip-base")
    assert proc.returncode == EXIT_INDEX and "damaged" in proc.stderr
    assert sha256(store) == digest  # neither command changed the file


def test_a_file_that_is_not_a_database_is_left_alone(run, tmp_path):
    photos = make_images(tmp_path / "photos", 1)
    run.home.mkdir(parents=True)
    store = run.home / "index.sqlite3"
    store.write_bytes(b"these are my notes, not a database\n" * 2000)
    digest = sha256(store)
    for argv in (("query", "--text", "x", "--in", photos, "--model", "blip-base"),
                 ("index", photos, "--model", "blip-base")):
        proc = run(*argv)
        assert proc.returncode == EXIT_INDEX, proc.stderr
        assert "not an SQLite database" in proc.stderr and "MMSEARCH_HOME" in proc.stderr
        assert_not_called_corrupt(proc.stderr)
    assert sha256(store) == digest
