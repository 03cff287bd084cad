"""Memory that used to grow with a flag (issue 12): `index --decode-workers N` decoding N large
photos at once, and `query --rerank K` holding K decoded photos. Both are now bounded: the
workers share a --decode-memory budget, and re-ranking decodes candidates a chunk at a time.

Peak resident memory is read from the kernel's accounting of one child process, and compared
between two runs of the same binary in the same test, never against an absolute figure.
"""
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
from PIL import Image

from test_cli_search import EXIT_OK

MIB = 1 << 20


def large_photos(folder: Path, count: int, width: int, height: int) -> Path:
    """Distinct photos (different content, so no two share vectors) that PNG-compress well."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(7)
    for i in range(count):
        pixels = np.zeros((height, width, 3), np.uint8)
        pixels[:, : width // 2] = (200, 20 + 15 * i, 40)
        pixels[:: 11] = rng.integers(0, 255, (1, width, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(folder / f"large_{i}.png", compress_level=1)
    return folder


def peak_rss(run, *args) -> tuple:
    """Runs mmsearch under a tiny parent whose only child it is, and returns (peak RSS in bytes,
    the completed process)."""
    wrapper = ("import resource, subprocess, sys\n"
               "p = subprocess.run(sys.argv[1:], capture_output=True, text=True)\n"
               "sys.stdout.write(p.stdout); sys.stderr.write(p.stderr)\n"
               "sys.stderr.write('\\nPEAK_RSS_KB=%d\\n' % "
               "resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)\n"
               "sys.exit(p.returncode)\n")
    env = dict(os.environ, MMSEARCH_HOME=str(run.home), OMP_NUM_THREADS="1",
               MMSEARCH_DTYPE="fp32")
    argv = [sys.executable, "-c", wrapper, str(run.binary), "--models", str(run.models)]
    proc = subprocess.run(argv + [str(a) for a in args], capture_output=True, text=True, env=env,
                          timeout=600)
    marker = proc.stderr.rsplit("PEAK_RSS_KB=", 1)
    assert len(marker) == 2, proc.stderr
    return int(marker[1].strip()) * 1024, proc


def test_decode_workers_share_one_memory_budget(run, tmp_path):
    # Six 12-Mpx photos: about 84 MB each by the header estimate, 7 bytes a pixel.
    photos = large_photos(tmp_path / "photos", 6, 4000, 3000)
    runs = {}
    for budget in ("16", "4096"):
        run.home = tmp_path / f"home-{budget}"
        rss, proc = peak_rss(run, "index", photos, "--model", "blip-base", "--json",
                             "--decode-workers", "6", "--batch-size", "6", "--decode-memory",
                             budget)
        assert proc.returncode == EXIT_OK, proc.stderr
        assert json.loads(proc.stdout)["indexed"] == 6
        runs[budget] = rss
    # With a budget smaller than one photo, the six workers take turns: several photos' worth
    # less than six decoding at once.
    assert runs["16"] + 150 * MIB < runs["4096"], runs


def test_decode_memory_is_validated(run, tmp_path):
    photos = large_photos(tmp_path / "photos", 1, 64, 48)
    for bad in ("0", "15", "-1", "lots"):
        proc = run("index", photos, "--model", "blip-base", "--decode-memory", bad)
        assert proc.returncode == 2 and "--decode-memory" in proc.stderr, (bad, proc.stderr)


def test_rerank_memory_does_not_grow_with_candidates(run, tmp_path):
    photos = large_photos(tmp_path / "photos", 12, 4000, 3000)
    run("index", photos, "--model", "blip-coco", check=EXIT_OK)
    args = ["query", "--in", photos, "--model", "blip-coco", "--text", "a red picture", "--json",
            "-k", "12", "--rerank"]
    few, proc_few = peak_rss(run, *args, "2")
    many, proc_many = peak_rss(run, *args, "12")
    assert proc_few.returncode == EXIT_OK and proc_many.returncode == EXIT_OK, proc_many.stderr
    hits = json.loads(proc_many.stdout)["results"]
    assert len(hits) == 12 and all(h.get("itm") is not None for h in hits)
    # Each decoded 12-Mpx photo is 36 MB; holding ten more of them would show.
    assert many < few + 150 * MIB, (few, many)


def test_rerank_keeps_candidates_it_cannot_read_after_the_rescored_ones(run, tmp_path):
    photos = large_photos(tmp_path / "photos", 4, 64, 48)
    run("index", photos, "--model", "blip-coco", check=EXIT_OK)
    (photos / "large_0.png").unlink()
    out = json.loads(run("query", "--in", photos, "--model", "blip-coco", "--text", "red",
                         "--json", "-k", "4", "--rerank", "4", check=EXIT_OK).stdout)
    paths = [Path(h["path"]).name for h in out["results"]]
    assert len(paths) == 4 and paths[-1] == "large_0.png", paths
    assert out["results"][-1].get("itm") is None
