"""`mmsearch index`, `query`, `simmatrix` and `eval` (issue 4), on tiny bundles and generated images.

The tiny bundles have random deterministic weights, so no test relies on a score meaning
anything. What is predictable: near-identical images (one colour or pattern plus tiny noise)
get near-identical vectors, so images of one synthetic category are much closer to each other
than to images of another; counts, fields, orderings and the fusion arithmetic are exact.
"""
import csv
import io
import json
import os
import shutil
import signal
import sqlite3
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import TINY_NAMES

EXIT_OK, EXIT_USAGE, EXIT_INPUT, EXIT_MODEL, EXIT_INDEX, EXIT_PARTIAL = 0, 2, 3, 4, 5, 6

# ---------------------------------------------------------------------------------------------
# Synthetic images.

COLOURS = {"red": (210, 30, 30), "green": (30, 190, 40), "blue": (30, 40, 210)}


def pattern(kind: str, size: int = 48) -> np.ndarray:
    """A base picture per category, very different from the others."""
    y, x = np.mgrid[0:size, 0:size]
    if kind == "checker":
        tile = ((x // 6 + y // 6) % 2) * 255
        return np.stack([tile] * 3, axis=-1).astype(np.float64)
    if kind == "gradient":
        ramp = x * 255.0 / (size - 1)
        return np.stack([ramp, 255 - ramp, np.full_like(ramp, 128)], axis=-1)
    if kind == "stripes":
        band = ((y // 4) % 2) * 255
        return np.stack([band, np.zeros_like(band), 255 - band], axis=-1).astype(np.float64)
    colour = COLOURS[kind]
    return np.ones((size, size, 3)) * np.array(colour, dtype=np.float64)


def save_image(path: Path, kind: str, seed: int, noise: float = 3.0, fmt: str = None,
               size: int = 48) -> Path:
    rng = np.random.default_rng(seed)
    pixels = np.clip(pattern(kind, size) + rng.normal(0, noise, (size, size, 3)), 0, 255)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels.astype(np.uint8)).save(path, format=fmt or "PNG")
    return path


def make_scene(root: Path, per_category: int = 3, captions: bool = True) -> dict:
    """Three categories (sub-folders) of near-identical images, named <category>_<i>.png, with
    a captions.csv (two captions for the first image of each category). Returns
    {relative path: (category, [captions])}."""
    truth = {}
    rows = []
    for c, kind in enumerate(["red", "checker", "gradient"]):
        for i in range(per_category):
            rel = f"{kind}/{kind}_{i}.png"
            save_image(root / rel, kind, seed=100 * c + i)
            caps = [f"a {kind} picture number {i}"]
            if i == 0:
                caps.append(f"another {kind} thing, with a comma")
            truth[rel] = (kind, caps)
            rows += [(rel, cap) for cap in caps]
    if captions:
        with open(root / "captions.csv", "w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(["file", "caption"])
            writer.writerows(rows)
    return truth


# The tiny test models give every pair of items a cosine within about 1e-3 of each other, finer
# than fp16 storage resolves; tests that check rankings or matrices that fine store exact
# vectors. fp16 (the default) is measured against real-sized vectors in docs/PERFORMANCE.md.
EXACT = ("--vectors", "fp32")


def summary(run, folder, *args, expect=EXIT_OK, **kwargs) -> dict:
    proc = run("index", folder, "--json", *args, **kwargs)
    assert proc.returncode == expect, f"exit {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
    return json.loads(proc.stdout)


def query(run, *args, **kwargs) -> dict:
    out = run.json("query", "--json", *args, **kwargs)
    check_results(out)
    return out


def check_results(out: dict):
    for key in ("model", "model_id", "scope", "against", "searched", "terms", "results"):
        assert key in out, key
    scores = [r["score"] for r in out["results"]]
    assert scores == sorted(scores, reverse=True), scores
    for rank, r in enumerate(out["results"], start=1):
        assert r["rank"] == rank
        for key in ("score", "path", "caption", "category"):
            assert key in r, (key, r)
        assert Path(r["path"]).is_absolute()
        assert np.isfinite(r["score"])


def by_path(out: dict) -> dict:
    return {r["path"]: r for r in out["results"]}


def indexed_paths(run, folder, model="blip-base") -> set:
    out = query(run, "--in", folder, "--model", model, "--text", "x", "-k", "100000")
    assert out["searched"] == len(out["results"])
    return {r["path"] for r in out["results"]}


# ---------------------------------------------------------------------------------------------
# index: incremental behaviour.


def test_index_reindex_delete_rename_duplicate_touch(run, tmp_path):
    d = tmp_path / "photos"
    truth = make_scene(d)
    n = len(truth)
    s = summary(run, d, "--model", "blip-base")
    assert (s["found"], s["indexed"], s["reused"], s["unchanged"], s["removed"], s["failed"]) == \
        (n, n, 0, 0, 0, 0), s
    assert s["root"] == str(d) and s["model"].startswith("blip-base@") and s["failures"] == []
    assert indexed_paths(run, d) == {str(d / rel) for rel in truth}

    # Nothing changed: nothing embedded, nothing stored again.
    s = summary(run, d, "--model", "blip-base")
    assert (s["found"], s["indexed"], s["reused"], s["unchanged"], s["removed"]) == \
        (n, 0, 0, n, 0), s

    # Delete: the file leaves the index.
    (d / "red/red_2.png").unlink()
    s = summary(run, d, "--model", "blip-base")
    assert (s["found"], s["indexed"], s["unchanged"], s["removed"]) == (n - 1, 0, n - 1, 1), s
    assert str(d / "red/red_2.png") not in indexed_paths(run, d)

    # Rename (into another category folder): vectors reused, nothing embedded, new category.
    (d / "red/red_1.png").rename(d / "gradient/moved.png")
    s = summary(run, d, "--model", "blip-base")
    assert (s["found"], s["indexed"], s["reused"], s["removed"], s["unchanged"]) == \
        (n - 1, 0, 1, 1, n - 2), s
    paths = indexed_paths(run, d)
    assert str(d / "gradient/moved.png") in paths and str(d / "red/red_1.png") not in paths
    moved = by_path(query(run, "--in", d / "gradient", "--model", "blip-base", "--text", "x",
                          "-k", "100"))
    assert moved[str(d / "gradient/moved.png")]["category"] == "gradient"

    # Duplicate: a copy under a new name reuses the stored vectors.
    shutil.copy2(d / "checker/checker_1.png", d / "checker/copy.png")
    s = summary(run, d, "--model", "blip-base")
    assert (s["found"], s["indexed"], s["reused"], s["unchanged"]) == (n, 0, 1, n - 1), s
    # ...and scores exactly like its original.
    out = query(run, "--in", d, "--model", "blip-base", "--text", "x", "-k", "100")
    hits = by_path(out)
    assert hits[str(d / "checker/copy.png")]["score"] == pytest.approx(
        hits[str(d / "checker/checker_1.png")]["score"], abs=1e-6)

    # Touched (new mtime, same bytes): not re-embedded.
    t = time.time() + 100
    os.utime(d / "red/red_0.png", (t, t))
    s = summary(run, d, "--model", "blip-base")
    assert s["indexed"] == 0 and s["reused"] + s["unchanged"] == s["found"], s
    s = summary(run, d, "--model", "blip-base")
    assert (s["indexed"], s["reused"], s["unchanged"]) == (0, 0, s["found"]), s

    # Changed content: re-embedded.
    save_image(d / "red/red_0.png", "blue", seed=7)
    s = summary(run, d, "--model", "blip-base")
    assert (s["indexed"], s["unchanged"]) == (1, s["found"] - 1), s

    # The plain summary line says the same in words.
    out = run("index", d, "--model", "blip-base", check=0).stdout
    assert "found" in out and f"{s['found']} unchanged" in out and "0 failed" in out


def test_duplicates_within_one_run_are_embedded_once(run, tmp_path):
    d = tmp_path / "photos"
    save_image(d / "a/one.png", "red", 1)
    (d / "b").mkdir()
    shutil.copy(d / "a/one.png", d / "b/one_copy.png")
    shutil.copy(d / "a/one.png", d / "b/one_copy2.png")
    (d / "b/one_copy2.txt").write_text("a caption only the second copy has\n")
    save_image(d / "a/two.png", "checker", 2)
    # A corrupt file and its copy: both fail, each under its own path.
    (d / "bad1.jpg").write_bytes(b"\xff\xd8\xff\xe0" + b"\0" * 60)
    shutil.copy(d / "bad1.jpg", d / "bad2.jpg")
    s = summary(run, d, "--model", "blip-base", expect=EXIT_PARTIAL)
    # one.png and two.png embedded; one_copy reuses one.png; one_copy2 has a caption of its
    # own, so it reuses nothing and is embedded too.
    assert (s["found"], s["indexed"], s["reused"], s["failed"]) == (6, 3, 1, 2), s
    assert {f["path"] for f in s["failures"]} == {str(d / "bad1.jpg"), str(d / "bad2.jpg")}
    hits = by_path(query(run, "--in", d, "--model", "blip-base", "--image", d / "a/two.png",
                         "-k", "10"))
    assert hits[str(d / "a/one.png")]["score"] == pytest.approx(
        hits[str(d / "b/one_copy.png")]["score"], abs=1e-6)
    assert hits[str(d / "b/one_copy.png")]["category"] == "b"
    assert hits[str(d / "b/one_copy2.png")]["caption"] == "a caption only the second copy has"


def test_several_models_index_one_folder_side_by_side(run, tmp_path):
    d = tmp_path / "photos"
    make_scene(d)
    a = summary(run, d, "--model", "blip-base")
    b = summary(run, d, "--model", "blip2-pretrain")
    assert a["indexed"] == b["indexed"] == a["found"] and a["model"] != b["model"]
    # Each model's vectors are its own; re-indexing one leaves the other unchanged.
    assert summary(run, d, "--model", "blip-base")["unchanged"] == a["found"]
    assert summary(run, d, "--model", "blip2-pretrain")["unchanged"] == a["found"]
    assert query(run, "--in", d, "--model", "blip2-pretrain", "--text", "x")["model"] == \
        "blip2-pretrain"


def test_changed_captions_are_re_embedded(run, tmp_path):
    d = tmp_path / "photos"
    save_image(d / "a.png", "red", 1)
    save_image(d / "b.png", "checker", 2)
    (d / "a.txt").write_text("a red square\n")
    (d / "b.txt").write_text("a checkerboard\n")
    assert summary(run, d, "--model", "blip-base")["indexed"] == 2

    (d / "a.txt").write_text("a crimson square\nsecond line caption\n")
    # Exact vectors: the tiny test model gives every caption a cosine within 1e-4 of 1, below
    # what fp16 storage resolves.
    s = summary(run, d, "--model", "blip-base", "--vectors", "fp32")
    assert (s["indexed"], s["unchanged"]) == (1, 1), s
    out = query(run, "--in", d, "--model", "blip-base", "--against", "text", "--text", "x",
                "-k", "100")
    captions = sorted(r["caption"] for r in out["results"])
    assert captions == ["a checkerboard", "a crimson square", "second line caption"]
    # The caption vectors are the new captions': a query with the caption's own text finds it
    # first (identical text -> identical vector, cosine 1).
    out = query(run, "--in", d, "--model", "blip-base", "--against", "text",
                "--text", "second line caption", "-k", "1")
    assert out["results"][0]["caption"] == "second line caption"
    assert out["results"][0]["score"] == pytest.approx(1.0, abs=1e-4)

    # A captions file that appears takes over from the sidecars.
    (d / "captions.csv").write_text("file,caption,category\nb.png,from the table,tables\n")
    s = summary(run, d, "--model", "blip-base")
    assert s["indexed"] == 1 and s["unchanged"] == 1, s
    hit = by_path(query(run, "--in", d, "--model", "blip-base", "--text", "x"))[str(d / "b.png")]
    assert (hit["caption"], hit["category"]) == ("from the table", "tables")


def test_hidden_folders_skipped_unless_asked(run, tmp_path):
    d = tmp_path / "photos"
    save_image(d / "seen.png", "red", 1)
    save_image(d / ".secret/a.png", "red", 2)
    save_image(d / "sub/.dotfile.png", "red", 3)
    save_image(d / "sub/visible.png", "red", 4)
    s = summary(run, d, "--model", "blip-base")
    assert (s["found"], s["indexed"]) == (2, 2), s
    assert indexed_paths(run, d) == {str(d / "seen.png"), str(d / "sub/visible.png")}
    s = summary(run, d, "--model", "blip-base", "--hidden")
    assert (s["found"], s["indexed"], s["unchanged"]) == (4, 2, 2), s
    assert str(d / ".secret/a.png") in indexed_paths(run, d)


def test_symlink_loop_sniffed_formats_and_non_images(run, tmp_path, shared):
    d = tmp_path / "photos"
    save_image(d / "a/plain.png", "red", 1)
    save_image(d / "a/no_extension", "red", 2)                  # PNG without an extension
    save_image(d / "a/wrong_ext.txt", "checker", 3, fmt="JPEG")  # JPEG named .txt
    save_image(d / "b/photo.jpeg", "gradient", 4, fmt="JPEG")
    save_image(d / "b/photo.webp", "gradient", 5, fmt="WEBP")
    save_image(d / "b/photo.bmp", "gradient", 6, fmt="BMP")
    save_image(d / "b/photo.gif", "gradient", 7, fmt="GIF")
    save_image(d / "b/photo.tif", "gradient", 8, fmt="TIFF")
    (d / "b/notes.txt").write_text("not an image at all\n")
    (d / "b/fake.png").write_text("neither is this, whatever its name says\n")
    (d / "b/empty.jpg").write_bytes(b"")
    (d / "b/data.bin").write_bytes(os.urandom(4096))
    (d / "a/loop").symlink_to(d, target_is_directory=True)          # a -> .. loop
    (d / "b/self").symlink_to(d / "b", target_is_directory=True)    # a folder into itself
    (d / "b/dangling").symlink_to(d / "nowhere")
    expected = {str(d / p) for p in ["a/plain.png", "a/no_extension", "a/wrong_ext.txt",
                                     "b/photo.jpeg", "b/photo.webp", "b/photo.bmp",
                                     "b/photo.gif", "b/photo.tif"]}
    # Files named like images that are not images are reported (exit 6); other non-images are
    # ignored.
    s = summary(run, d, "--model", "blip-base", timeout=60, expect=EXIT_PARTIAL)
    assert (s["found"], s["indexed"], s["failed"]) == (len(expected) + 2, len(expected), 2), s
    reasons = {f["path"]: f["reason"] for f in s["failures"]}
    assert set(reasons) == {str(d / "b/empty.jpg"), str(d / "b/fake.png")}
    assert "empty" in reasons[str(d / "b/empty.jpg")]
    assert "not an image" in reasons[str(d / "b/fake.png")]
    assert indexed_paths(run, d) == expected


# ---------------------------------------------------------------------------------------------
# Captions and categories.


def _caption_rows():
    # (file, caption, category or None): several rows for one file, a comma and quotes, a
    # category given for one file only.
    return [
        ("pizza/p1.png", "a pizza, with \"olives\"", None),
        ("pizza/p1.png", "second caption of p1", None),
        ("pasta/q1.png", "a plate of pasta", "primi"),
        ("top.png", "directly in the folder", None),
    ]


def _make_caption_folder(d: Path):
    save_image(d / "pizza/p1.png", "red", 1)
    save_image(d / "pizza/p2.png", "red", 2)   # no captions: only a category
    save_image(d / "pasta/q1.png", "checker", 3)
    save_image(d / "top.png", "gradient", 4)
    save_image(d / "pasta/deep/q2.png", "checker", 5)
    (d / "pasta/deep/q2.txt").write_text("sidecar caption one\n\n  sidecar caption two  \n")


def _expected_captions(d: Path) -> dict:
    return {
        (str(d / "pizza/p1.png"), "a pizza, with \"olives\"", "pizza"),
        (str(d / "pizza/p1.png"), "second caption of p1", "pizza"),
        (str(d / "pasta/q1.png"), "a plate of pasta", "primi"),
        (str(d / "top.png"), "directly in the folder", ""),
        (str(d / "pasta/deep/q2.png"), "sidecar caption one", "pasta"),
        (str(d / "pasta/deep/q2.png"), "sidecar caption two", "pasta"),
    }


@pytest.mark.parametrize("fmt", ["csv", "tsv", "jsonl"])
def test_captions_files_sidecars_and_categories(run, tmp_path, fmt):
    d = tmp_path / "photos"
    _make_caption_folder(d)
    rows = _caption_rows()
    if fmt == "jsonl":
        lines = []
        for file, caption, category in rows:
            obj = {"file": file, "caption": caption}
            if category:
                obj["category"] = category
            lines.append(json.dumps(obj))
        (d / "captions.jsonl").write_text("\n".join(lines) + "\n")
    else:
        buf = io.StringIO()
        writer = csv.writer(buf, delimiter="," if fmt == "csv" else "\t", lineterminator="\n")
        writer.writerow(["file", "caption", "category"])
        writer.writerows([(f, c, cat or "") for f, c, cat in rows])
        (d / f"captions.{fmt}").write_text(buf.getvalue())
    s = summary(run, d, "--model", "blip-base")
    assert (s["found"], s["indexed"], s["failed"]) == (5, 5, 0), s
    assert s["warnings"] == [], s["warnings"]

    out = query(run, "--in", d, "--model", "blip-base", "--against", "text", "--text", "x",
                "-k", "100")
    got = {(r["path"], r["caption"], r["category"]) for r in out["results"]}
    assert got == _expected_captions(d)
    assert out["searched"] == 6
    # Image results carry the first caption and the category; an uncaptioned image has none.
    images = by_path(query(run, "--in", d, "--model", "blip-base", "--text", "x", "-k", "100"))
    assert images[str(d / "pizza/p1.png")]["caption"] == "a pizza, with \"olives\""
    assert (images[str(d / "pizza/p2.png")]["caption"],
            images[str(d / "pizza/p2.png")]["category"]) == ("", "pizza")
    assert images[str(d / "top.png")]["category"] == ""


def test_captions_file_with_a_bad_row_warns_and_goes_on(run, tmp_path):
    d = tmp_path / "photos"
    save_image(d / "a.png", "red", 1)
    save_image(d / "b.png", "checker", 2)
    (d / "captions.jsonl").write_text('{"file": "a.png", "caption": "fine"}\n'
                                      'this is not json\n'
                                      '{"file": "b.png", "caption": "also fine"}\n')
    # Strict by default (test_cli_captions_strict.py); lenient warns and goes on.
    s = summary(run, d, "--model", "blip-base", "--lenient-captions")
    assert (s["indexed"], s["failed"]) == (2, 0)
    assert any("captions.jsonl" in w and "2" in w for w in s["warnings"]), s["warnings"]
    out = query(run, "--in", d, "--model", "blip-base", "--against", "text", "--text", "x")
    assert {r["caption"] for r in out["results"]} == {"fine", "also fine"}


def test_captions_that_are_not_utf8_are_skipped_with_a_warning(run, tmp_path):
    # A Latin-1 sidecar or captions row must not abort the run (it used to: exit 3, nothing
    # indexed after the batch that held it).
    d = tmp_path / "photos"
    save_image(d / "dolci/tiramisu.png", "red", 1)
    (d / "dolci/tiramisu.txt").write_bytes("tiramis\xf9 al caff\xe8\n".encode("latin-1"))
    save_image(d / "dolci/cake.png", "checker", 2)
    (d / "dolci/cake.txt").write_text("a cake\n")
    s = summary(run, d, "--model", "blip-base")
    assert (s["found"], s["indexed"], s["failed"]) == (2, 2, 0), s
    assert any("tiramisu.txt" in w and "UTF-8" in w for w in s["warnings"]), s["warnings"]
    hits = by_path(query(run, "--in", d, "--model", "blip-base", "--text", "x"))
    assert hits[str(d / "dolci/tiramisu.png")]["caption"] == ""
    assert hits[str(d / "dolci/tiramisu.png")]["category"] == "dolci"
    assert hits[str(d / "dolci/cake.png")]["caption"] == "a cake"

    e = tmp_path / "table"
    save_image(e / "a.png", "red", 11)
    save_image(e / "b.png", "checker", 12)
    (e / "captions.csv").write_bytes(b"file,caption\na.png,caff\xe8\nb.png,fine\n")
    s = summary(run, e, "--model", "blip-base")
    assert (s["indexed"], s["failed"]) == (2, 0), s
    assert any("captions.csv" in w and "UTF-8" in w for w in s["warnings"]), s["warnings"]
    out = query(run, "--in", e, "--model", "blip-base", "--against", "text", "--text", "x")
    assert [r["caption"] for r in out["results"]] == ["fine"]


# ---------------------------------------------------------------------------------------------
# Corrupt files and crashes.


def test_corrupt_file_in_the_middle_is_reported_and_skipped(run, tmp_path, shared):
    d = tmp_path / "photos"
    for i in range(6):
        save_image(d / f"img_{i}.png", "red", i)
    # A JPEG cut short after its header, sorted between the good files.
    good = io.BytesIO()
    Image.fromarray(np.full((64, 64, 3), 90, np.uint8)).save(good, format="JPEG")
    (d / "img_3b.jpg").write_bytes(good.getvalue()[:200])
    # A PNG whose pixel data is garbage.
    png = io.BytesIO()
    Image.fromarray(np.full((32, 32, 3), 10, np.uint8)).save(png, format="PNG")
    raw = bytearray(png.getvalue())
    raw[60:-20] = os.urandom(len(raw) - 80)
    (d / "img_4b.png").write_bytes(bytes(raw))
    broken = {str(d / "img_3b.jpg"), str(d / "img_4b.png")}
    if (shared / "data/edge/truncated.jpg").exists():
        shutil.copy(shared / "data/edge/truncated.jpg", d / "img_1b.jpg")
        broken.add(str(d / "img_1b.jpg"))

    s = summary(run, d, "--model", "blip-base", "--batch-size", "2", expect=EXIT_PARTIAL)
    assert s["found"] == 6 + len(broken)
    assert (s["indexed"], s["failed"]) == (6, len(broken)), s
    assert {f["path"] for f in s["failures"]} == broken
    for f in s["failures"]:
        assert f["reason"].strip(), f
        assert Path(f["path"]).name in f["reason"], f
    assert indexed_paths(run, d) == {str(d / f"img_{i}.png") for i in range(6)}

    # Plain output names the failure too, and a rerun still fails only on those files.
    proc = run("index", d, "--model", "blip-base")
    assert proc.returncode == EXIT_PARTIAL, proc.stderr
    assert "img_3b.jpg" in proc.stdout + proc.stderr
    s = summary(run, d, "--model", "blip-base", expect=EXIT_PARTIAL)
    assert (s["unchanged"], s["indexed"], s["failed"]) == (6, 0, len(broken)), s

    # An indexed file replaced by a corrupt one fails, and its old vectors leave the index.
    (d / "img_5.png").write_bytes((d / "img_3b.jpg").read_bytes())
    s = summary(run, d, "--model", "blip-base", expect=EXIT_PARTIAL)
    assert (s["unchanged"], s["failed"]) == (5, len(broken) + 1), s
    assert str(d / "img_5.png") in {f["path"] for f in s["failures"]}
    assert indexed_paths(run, d) == {str(d / f"img_{i}.png") for i in range(5)}


def _stored_file_count(db: Path) -> int:
    if not db.exists():
        return 0
    try:
        con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=0.2)
        try:
            return con.execute("SELECT count(*) FROM files").fetchone()[0]
        finally:
            con.close()
    except sqlite3.Error:
        return 0


def test_kill_9_during_indexing_keeps_committed_batches_and_resumes(run, tmp_path):
    d = tmp_path / "many"
    total = 240
    for i in range(total):
        save_image(d / f"c{i % 3}/img_{i:04d}.png", ["red", "checker", "gradient"][i % 3],
                   seed=i, size=40)
    db = run.home / "index.sqlite3"
    env = dict(os.environ, MMSEARCH_HOME=str(run.home), OMP_NUM_THREADS="1", MMSEARCH_DTYPE="fp32")
    proc = subprocess.Popen([str(run.binary), "--models", str(run.models), "index", str(d),
                             "--model", "blip2-coco", "--batch-size", "4", "--json"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    try:
        deadline = time.monotonic() + 60
        while _stored_file_count(db) < 8 and time.monotonic() < deadline:
            assert proc.poll() is None, "indexing finished before it could be killed: " \
                                        "make the folder bigger"
            time.sleep(0.02)
        assert proc.poll() is None, "indexing finished before it could be killed"
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.kill()
        proc.communicate()
    assert proc.returncode == -signal.SIGKILL

    committed = _stored_file_count(db)
    assert 8 <= committed < total, committed

    # The store opens and answers (read-only, straight after the crash).
    out = query(run, "--in", d, "--model", "blip2-coco", "--text", "x", "-k", "100000")
    assert out["searched"] == committed == len(out["results"])
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    assert con.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    con.close()

    # A rerun keeps what was committed and does the rest.
    s = summary(run, d, "--model", "blip2-coco", "--batch-size", "16")
    assert (s["found"], s["unchanged"], s["indexed"], s["failed"], s["removed"]) == \
        (total, committed, total - committed, 0, 0), s
    assert query(run, "--in", d, "--model", "blip2-coco", "--text", "x")["searched"] == total


# ---------------------------------------------------------------------------------------------
# query.


@pytest.fixture
def scene(run, tmp_path):
    d = tmp_path / "photos"
    truth = make_scene(d)
    summary(run, d, "--model", "blip-base")
    return d, truth


def test_query_text_fields_k_and_threshold(run, scene):
    d, truth = scene
    out = query(run, "--in", d, "--model", "blip-base", "--text", "a red picture")
    assert out["model"] == "blip-base" and out["against"] == "image"
    assert out["scope"] == str(d) and out["searched"] == len(truth)
    assert len(out["results"]) == 5  # default k
    assert out["terms"] == [{"kind": "text", "value": "a red picture", "weight": 1.0}]
    # Where the time went: the query's phases and the search's parts, which fit inside it.
    phases, parts = out["phases_ms"], out["search_phases_ms"]
    assert set(phases) == {"open", "load", "tokenize", "forward", "search", "rerank"}
    assert set(parts) == {"select", "ann", "scan", "rescore", "owners"}
    assert all(v >= 0 for v in [*phases.values(), *parts.values()])
    assert sum(parts.values()) <= phases["search"] + 0.5
    for r in out["results"]:
        rel = str(Path(r["path"]).relative_to(d))
        assert r["category"] == truth[rel][0] and r["caption"] == truth[rel][1][0]

    assert len(query(run, "--in", d, "--model", "blip-base", "--text", "x", "-k", "2")[
        "results"]) == 2
    everything = query(run, "--in", d, "--model", "blip-base", "--text", "x", "-k", "1000")
    assert len(everything["results"]) == len(truth)
    scores = [r["score"] for r in everything["results"]]
    cut = (scores[3] + scores[4]) / 2
    out = query(run, "--in", d, "--model", "blip-base", "--text", "x", "-k", "1000",
                "--threshold", cut)
    assert [r["path"] for r in out["results"]] == [r["path"] for r in everything["results"][:4]]
    assert all(r["score"] >= cut for r in out["results"])
    out = query(run, "--in", d, "--model", "blip-base", "--text", "x", "--threshold", "1.01")
    assert out["results"] == []
    # The table and bare paths say the same.
    table = run("query", "--in", d, "--model", "blip-base", "--text", "x", "-k", "3",
                check=0).stdout
    assert "RANK" in table and "SCORE" in table
    paths = run("query", "--in", d, "--model", "blip-base", "--text", "x", "-k", "3",
                "--paths", check=0).stdout.splitlines()
    assert paths == [r["path"] for r in everything["results"][:3]]
    assert all(Path(p).is_file() for p in paths)


@pytest.mark.parametrize("model", ["blip-base", "blip2-pretrain"])
def test_query_image_excludes_itself_and_finds_its_category(run, tmp_path, model):
    d = tmp_path / "photos"
    truth = make_scene(d)
    summary(run, d, "--model", model, *EXACT)
    for rel, (category, _) in truth.items():
        if not rel.endswith("_0.png"):
            continue
        out = query(run, "--in", d, "--model", model, "--image", d / rel, "-k", "100")
        paths = [r["path"] for r in out["results"]]
        assert str(d / rel) not in paths
        assert len(paths) == len(truth) - 1
        # The two other images of its category (tiny noise apart) come first.
        assert [r["category"] for r in out["results"][:2]] == [category, category], out
        assert out["terms"][0]["kind"] == "image"
    # A relative query path is excluded too (run from inside the folder).
    out = query(run, "--model", model, "--image", "red/red_1.png", "-k", "100", cwd=d)
    assert str(d / "red/red_1.png") not in [r["path"] for r in out["results"]]
    assert out["scope"] == str(d)


@pytest.mark.parametrize("model", ["blip-base", "blip2-pretrain"])
def test_query_fusion_of_weighted_terms(run, tmp_path, model):
    d = tmp_path / "photos"
    truth = make_scene(d)
    summary(run, d, "--model", model)
    base = ["--in", d, "--model", model, "-k", "1000"]
    img = d / "checker/checker_0.png"

    def scores(*args):
        out = query(run, *base, *args)
        return out, {r["path"]: r["score"] for r in out["results"]}

    _, t = scores("--text", "pizza")
    _, c = scores("--text", "cheese")
    _, i = scores("--image", img)
    assert len(t) == len(truth) and len(i) == len(truth) - 1

    # Text and image with --text-weight: 0.3 * text + 0.7 * image.
    out, both = scores("--text", "pizza", "--image", img, "--text-weight", "0.3")
    assert sorted((x["kind"], round(x["weight"], 6)) for x in out["terms"]) == \
        [("image", 0.7), ("text", 0.3)]
    assert set(both) == set(i)  # the query image is excluded from combined queries too
    for p in both:
        assert both[p] == pytest.approx(0.3 * t[p] + 0.7 * i[p], abs=1e-5)

    # rclip-style terms: "2:pizza" and "-cheese" -> (2 * pizza - cheese) / 3.
    out, fused = scores("--text", "2:pizza", "--text", "-cheese")
    assert [(x["value"], x["weight"]) for x in out["terms"]] == [("pizza", 2.0), ("cheese", -1.0)]
    for p in fused:
        assert fused[p] == pytest.approx((2 * t[p] - c[p]) / 3, abs=1e-5)

    # A weighted image term next to a text one.
    out, mixed = scores("--text", "pizza", "--image", f"-0.5:{img}", "--text-weight", "0.5")
    assert [x["weight"] for x in out["terms"]] == [0.5, -0.25]
    for p in mixed:
        assert mixed[p] == pytest.approx((0.5 * t[p] - 0.25 * i[p]) / 0.75, abs=1e-5)


def test_query_scope_defaults_to_the_current_folder_and_its_model(run, tmp_path):
    d = tmp_path / "photos"
    truth = make_scene(d)
    summary(run, d, "--model", "blip2-pretrain")
    # No --in, no --model: the current folder's subtree, with the model it was indexed with.
    out = query(run, "--text", "x", "-k", "100", cwd=d / "checker")
    assert out["model"] == "blip2-pretrain" and out["scope"] == str(d / "checker")
    assert {r["category"] for r in out["results"]} == {"checker"}
    assert len(out["results"]) == sum(1 for c, _ in truth.values() if c == "checker")
    out = query(run, "--text", "x", "-k", "100", cwd=d)
    assert len(out["results"]) == len(truth)
    # A parent folder of the indexed one holds it too.
    out = query(run, "--text", "x", "-k", "100", cwd=d.parent)
    assert len(out["results"]) == len(truth) and out["model"] == "blip2-pretrain"
    # --in relative to the current folder, with a trailing slash.
    out = query(run, "--in", "photos/red/", "--text", "x", "-k", "100", cwd=d.parent)
    assert {r["category"] for r in out["results"]} == {"red"}
    # A sibling whose name starts with the scope's name is not inside the scope.
    save_image(tmp_path / "photos2/x.png", "red", 9)
    summary(run, tmp_path / "photos2", "--model", "blip2-pretrain")
    out = query(run, "--in", d, "--text", "x", "-k", "100")
    assert len(out["results"]) == len(truth)


@pytest.mark.parametrize("model", ["blip-base", "blip2-pretrain"])
def test_query_against_image_text_and_multimodal(run, tmp_path, model):
    d = tmp_path / "photos"
    truth = make_scene(d)
    summary(run, d, "--model", model, *EXACT)
    n_images = len(truth)
    n_captions = sum(len(caps) for _, caps in truth.values())
    img = d / "red/red_0.png"
    for against, searched in [("image", n_images), ("text", n_captions),
                              ("multimodal", n_captions)]:
        for term in (["--text", "a red picture number 1"], ["--image", img]):
            out = query(run, "--in", d, "--model", model, "--against", against, *term,
                        "-k", "1000")
            assert out["against"] == against and out["searched"] == searched
            results = out["results"]
            if term[0] == "--image":
                # Every row of the query image (its captions too) is left out.
                assert str(img) not in {r["path"] for r in results}
                expected = searched - (1 if against == "image" else len(truth["red/red_0.png"][1]))
            else:
                expected = searched
            assert len(results) == expected, (against, term)
            if against != "image":
                for r in results:
                    rel = str(Path(r["path"]).relative_to(d))
                    assert r["caption"] in truth[rel][1]
    # Text against text: the identical caption scores 1 and comes first.
    out = query(run, "--in", d, "--model", model, "--against", "text",
                "--text", "a checker picture number 2", "-k", "1")
    assert out["results"][0]["caption"] == "a checker picture number 2"
    assert out["results"][0]["score"] == pytest.approx(1.0, abs=1e-4)


@pytest.mark.parametrize("model", ["blip-coco", "blip2-pretrain"])
def test_query_rerank_with_itm(run, tmp_path, model):
    d = tmp_path / "photos"
    truth = make_scene(d)
    summary(run, d, "--model", model)
    plain = query(run, "--in", d, "--model", model, "--text", "a red picture", "-k", "1000")
    itc = {r["path"]: r["score"] for r in plain["results"]}
    out = query(run, "--in", d, "--model", model, "--text", "a red picture", "--rerank", "6",
                "-k", "4")
    assert len(out["results"]) == 4
    top6 = {r["path"] for r in plain["results"][:6]}
    for r in out["results"]:
        assert r["path"] in top6
        assert r["itc"] == pytest.approx(itc[r["path"]], abs=1e-5)
        assert r["score"] == pytest.approx(r["itm"] + r["itc"], abs=1e-4)
    # Re-ranking K <= k re-scores all of them: the same set, possibly reordered.
    out = query(run, "--in", d, "--model", model, "--text", "a red picture", "--rerank", "3",
                "-k", "3")
    assert {r["path"] for r in out["results"]} == {r["path"] for r in plain["results"][:3]}
    assert all("itm" in r for r in out["results"])


def test_query_rerank_refused_without_an_itm_head(run, scene):
    d, _ = scene
    proc = run("query", "--in", d, "--model", "blip-base", "--text", "x", "--rerank", "5")
    assert proc.returncode == EXIT_USAGE, proc.stderr
    assert "ITM" in proc.stderr and "blip-base" in proc.stderr
    # Re-ranking needs a text term.
    summary(run, d, "--model", "blip-coco")
    proc = run("query", "--in", d, "--model", "blip-coco", "--image", d / "red/red_0.png",
               "--rerank", "5")
    assert proc.returncode == EXIT_USAGE, proc.stderr


def test_query_montage_writes_a_png(run, scene, tmp_path):
    d, _ = scene
    out_png = tmp_path / "figs" / "montage.png"
    out_png.parent.mkdir()
    out = query(run, "--in", d, "--model", "blip-base", "--image", d / "red/red_0.png",
                "--text", "a red picture", "-k", "4", "--montage", out_png)
    assert len(out["results"]) == 4
    with Image.open(out_png) as im:
        assert im.format == "PNG"
        assert im.width >= 4 * 100 and im.height >= 100
    # With --paths too.
    out_png2 = tmp_path / "m2.png"
    proc = run("query", "--in", d, "--model", "blip-base", "--text", "x", "-k", "2", "--paths",
               "--montage", out_png2, check=0)
    assert len(proc.stdout.splitlines()) == 2
    with Image.open(out_png2) as im:
        im.verify()


# ---------------------------------------------------------------------------------------------
# Scope and model errors.


def test_query_errors_say_what_to_run(run, tmp_path):
    d = tmp_path / "photos"
    make_scene(d, per_category=1)
    other = tmp_path / "other"
    save_image(other / "x.png", "red", 1)

    # No index at all.
    proc = run("query", "--in", d, "--model", "blip-base", "--text", "x")
    assert proc.returncode == EXIT_INDEX, proc.stderr
    assert "mmsearch index" in proc.stderr and proc.stdout == ""
    proc = run("query", "--in", d, "--text", "x")
    assert proc.returncode == EXIT_INDEX, proc.stderr

    summary(run, d, "--model", "blip-base")
    # A folder that was never indexed, with and without --model.
    for extra in (["--model", "blip-base"], []):
        proc = run("query", "--in", other, "--text", "x", *extra)
        assert proc.returncode == EXIT_INDEX, proc.stderr
        assert "not been indexed" in proc.stderr and "mmsearch index" in proc.stderr
        assert str(other) in proc.stderr

    # Indexed with blip-base only, queried with another model.
    proc = run("query", "--in", d, "--model", "blip2-pretrain", "--text", "x")
    assert proc.returncode == EXIT_INDEX, proc.stderr
    assert "blip-base" in proc.stderr and "mmsearch index" in proc.stderr
    assert "blip2-pretrain" in proc.stderr

    # A scope that does not exist, a query image that does not exist.
    proc = run("query", "--in", tmp_path / "missing", "--model", "blip-base", "--text", "x")
    assert proc.returncode == EXIT_INPUT, proc.stderr
    assert "missing" in proc.stderr
    proc = run("query", "--in", d, "--model", "blip-base", "--image", tmp_path / "nope.png")
    assert proc.returncode == EXIT_INPUT, proc.stderr

    # Usage errors.
    assert run("query", "--in", d, "--model", "blip-base").returncode == EXIT_USAGE
    assert run("query", "--in", d, "--model", "blip-base", "--text", "x",
               "--against", "pixels").returncode == EXIT_USAGE
    assert run("query", "--in", d, "--model", "blip-base", "--text", "x", "--json",
               "--paths").returncode == EXIT_USAGE
    assert run("query", "--in", d, "--model", "no-such-model", "--text", "x").returncode == \
        EXIT_MODEL

    # index on something that is not a folder.
    assert run("index", tmp_path / "missing", "--model", "blip-base").returncode == EXIT_INPUT


# ---------------------------------------------------------------------------------------------
# simmatrix.


def read_matrix(path: Path):
    with open(path, newline="") as f:
        rows = list(csv.reader(f))
    header = rows[0]
    assert header[0] == "label"
    labels = [r[0] for r in rows[1:]]
    values = np.array([[float(x) for x in r[1:]] for r in rows[1:]])
    assert values.shape == (len(labels), len(header) - 1)
    return labels, header[1:], values


def category_of(label: str) -> str:
    return Path(label).name.split("_")[0]


def assert_grouped(labels):
    cats = [category_of(l) for l in labels]
    assert cats == sorted(cats), cats  # grouped, in category order


@pytest.mark.parametrize("model", ["blip-base", "blip2-pretrain"])
def test_simmatrix_image_image_shows_the_category_blocks(run, tmp_path, model):
    d = tmp_path / "photos"
    truth = make_scene(d, per_category=4)
    summary(run, d, "--model", model, *EXACT)
    out = tmp_path / "out" / "m"
    proc = run("simmatrix", "--in", d, "--model", model, "--kind", "image-image", "--out", out,
               check=0)
    assert "image-image" in proc.stdout
    labels, cols, m = read_matrix(Path(f"{out}-image-image.csv"))
    assert labels == cols and len(labels) == len(truth)
    # Labels are paths relative to the scope, so equal file names in two folders stay apart.
    assert sorted(labels) == sorted(str(Path(rel)) for rel in truth)
    assert_grouped(labels)
    assert np.allclose(m, m.T, atol=1e-5)
    assert np.allclose(np.diag(m), 1.0, atol=1e-4)
    cats = np.array([category_of(l) for l in labels])
    same = cats[:, None] == cats[None, :]
    off_diag = ~np.eye(len(labels), dtype=bool)
    within = m[same & off_diag].mean()
    across = m[~same].mean()
    assert within > across, (within, across)
    # Every image is closer to each image of its own category than to any of another.
    for r in range(len(labels)):
        assert m[r, same[r] & off_diag[r]].min() > m[r, ~same[r]].max(), (labels[r], m[r])
    with Image.open(f"{out}-image-image.png") as im:
        assert im.format == "PNG" and im.width >= 300 and im.height >= 300
        im.verify()


def test_simmatrix_all_kinds_and_default_output(run, tmp_path):
    d = tmp_path / "photos"
    truth = make_scene(d, per_category=2)
    summary(run, d, "--model", "blip2-pretrain", *EXACT)
    n_images = len(truth)
    n_captions = sum(len(c) for _, c in truth.values())
    work = tmp_path / "work"
    work.mkdir()
    # Default scope (the current folder) and model (the scope's), default output prefix.
    run("simmatrix", "--kind", "all", "--in", d, check=0, cwd=work)
    shapes = {"image-image": (n_images, n_images), "image-text": (n_images, n_captions),
              "image-multimodal": (n_images, n_captions),
              "multimodal-multimodal": (n_captions, n_captions),
              "text-text": (n_captions, n_captions)}
    for kind, shape in shapes.items():
        base = work / f"simmatrix-blip2-pretrain-{kind}"
        labels, cols, m = read_matrix(Path(f"{base}.csv"))
        assert m.shape == shape, kind
        assert_grouped(labels)
        assert_grouped(cols)
        assert np.all(np.isfinite(m)) and np.all(np.abs(m) <= 1.0001), kind
        with Image.open(f"{base}.png") as im:
            assert im.format == "PNG" and im.width >= 300
    # text-text: a caption is identical to itself.
    _, _, tt = read_matrix(work / "simmatrix-blip2-pretrain-text-text.csv")
    assert np.allclose(np.diag(tt), 1.0, atol=1e-4)


def test_simmatrix_errors(run, tmp_path):
    d = tmp_path / "photos"
    save_image(d / "a/x.png", "red", 1)
    proc = run("simmatrix", "--in", d, "--model", "blip-base", "--out", tmp_path / "m")
    assert proc.returncode == EXIT_INDEX, proc.stderr
    summary(run, d, "--model", "blip-base")
    # image-text needs captions.
    proc = run("simmatrix", "--in", d, "--model", "blip-base", "--kind", "image-text",
               "--out", tmp_path / "m")
    assert proc.returncode == EXIT_INDEX and "caption" in proc.stderr, proc.stderr
    proc = run("simmatrix", "--in", d, "--model", "blip2-vitL", "--out", tmp_path / "m")
    assert proc.returncode == EXIT_INDEX and "blip-base" in proc.stderr, proc.stderr
    proc = run("simmatrix", "--in", d, "--kind", "pixels", "--out", tmp_path / "m")
    assert proc.returncode == EXIT_USAGE, proc.stderr
    proc = run("simmatrix", "--in", tmp_path / "missing", "--model", "blip-base")
    assert proc.returncode == EXIT_INPUT, proc.stderr


# ---------------------------------------------------------------------------------------------
# eval.


def check_report(r: dict, images: int, captions: int):
    assert r["images"] == images and r["captions"] == captions
    for side in ("text_to_image", "image_to_text"):
        rec = r[side]
        for key in ("r1", "r5", "r10"):
            assert 0.0 <= rec[key] <= 1.0, (side, rec)
        assert rec["r1"] <= rec["r5"] <= rec["r10"], rec
    assert r["text_to_image"]["queries"] == captions
    assert r["image_to_text"]["queries"] == images
    p5 = r["image_to_image_category_p5"]
    assert 0.0 <= p5["precision"] <= 1.0 and p5["queries"] == images
    assert r["failed"] == 0
    assert r["sample"] is None  # every caption and image was a query


def test_eval_one_model_and_all_models(run, tmp_path):
    d = tmp_path / "photos"
    truth = make_scene(d)
    n_captions = sum(len(c) for _, c in truth.values())
    reports = run.json("eval", d, "--model", "blip-base", "--json")
    assert len(reports) == 1 and reports[0]["model"] == "blip-base"
    check_report(reports[0], len(truth), n_captions)
    # 10 >= every candidate: recall@10 is 1 whatever the scores.
    assert reports[0]["text_to_image"]["r10"] == 1.0
    # Near-identical images per category: image->image precision is perfect even at random
    # weights (2 other images per category out of 5 asked -> 2/5 with 3 per category).
    assert reports[0]["image_to_image_category_p5"]["precision"] == pytest.approx(2 / 5)

    reports = run.json("eval", d, "--all-models", "--json")
    # Every valid installed model: the five tiny ones, plus the repository's default model
    # (dishes-tiny), which the build-tree binary always finds.
    assert set(TINY_NAMES) <= {r["model"] for r in reports}
    for r in reports:
        check_report(r, len(truth), n_captions)
    table = run("eval", d, "--model", "blip-base", check=0).stdout
    assert "blip-base" in table and "MODEL" in table


def test_eval_relevance_by_identical_caption(run, tmp_path):
    # Every image has the same caption: any image answers it, so R@1 is 1 whatever the model.
    d = tmp_path / "photos"
    for i in range(6):
        save_image(d / f"food/img_{i}.png", ["red", "checker"][i % 2], seed=i)
        (d / f"food/img_{i}.txt").write_text("a plate of food\n")
    r = run.json("eval", d, "--model", "blip2-pretrain", "--json")[0]
    assert r["text_to_image"]["r1"] == 1.0 and r["image_to_text"]["r1"] == 1.0
    assert r["image_to_image_category_p5"]["precision"] == 1.0


def test_eval_sample_of_queries_is_reported(run, tmp_path):
    d = tmp_path / "photos"
    truth = make_scene(d, per_category=3)  # 9 images, 12 captions, 3 categories
    n_captions = sum(len(c) for _, c in truth.values())
    full = run.json("eval", d, "--model", "blip-base", "--json")[0]
    r = run.json("eval", d, "--model", "blip-base", "--sample", "4", "--seed", "2", "--json")[0]
    # The candidates stay whole; the queries are 4 of each, stratified by category.
    assert r["images"] == len(truth) and r["captions"] == n_captions
    assert r["sample"] == {"size": 4, "seed": 2, "stratified_by": "category",
                           "caption_queries": 4, "image_queries": 4}
    assert r["text_to_image"]["queries"] == 4 and r["image_to_text"]["queries"] == 4
    assert r["image_to_image_category_p5"]["queries"] == 4
    # Near-identical images per category: every sampled image scores the full run's 2/5.
    assert r["image_to_image_category_p5"]["precision"] == pytest.approx(2 / 5)
    assert full["image_to_image_category_p5"]["precision"] == pytest.approx(2 / 5)
    # Seeded: the same sample again; the table says it is one.
    assert run.json("eval", d, "--model", "blip-base", "--sample", "4", "--seed", "2",
                    "--json")[0] == r
    proc = run("eval", d, "--model", "blip-base", "--sample", "4", "--seed", "2", check=0)
    assert "sample of 4 of 12 caption queries and 4 of 9 image queries" in proc.stdout
    assert "seed 2" in proc.stdout
    # A sample as large as the folder is every query.
    r = run.json("eval", d, "--model", "blip-base", "--sample", "100", "--json")[0]
    check_report(r, len(truth), n_captions)
    assert run("eval", d, "--model", "blip-base", "--sample", "0").returncode == EXIT_USAGE


def test_eval_errors(run, tmp_path):
    d = tmp_path / "photos"
    save_image(d / "a.png", "red", 1)
    proc = run("eval", d, "--model", "blip-base", "--json")
    assert proc.returncode == EXIT_INPUT and "caption" in proc.stderr, proc.stderr
    assert run("eval", tmp_path / "missing", "--model", "blip-base").returncode == EXIT_INPUT
