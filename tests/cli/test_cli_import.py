"""`mmsearch import` and `mmsearch export-vectors` through the real binary: an export of a real
`index` imported into a fresh MMSEARCH_HOME answers queries exactly as the original, float16
and relative exports, vectors made by numpy (as a GPU box would write them), every validation
error with its exit code, --dry-run, and kill -9 during an import followed by a rerun."""
import csv
import json
import os
import signal
import sqlite3
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import Runner

EXIT_OK, EXIT_USAGE, EXIT_INPUT, EXIT_MODEL, EXIT_INDEX = 0, 2, 3, 4, 5
KINDS = ["red", "stripes", "checker"]


def write_photos(root: Path, per_kind: int = 3) -> None:
    """Small PNGs in one sub-folder per kind, with a captions.csv (two captions for the first
    image of each kind, none for the last)."""
    rows = []
    for k, kind in enumerate(KINDS):
        for i in range(per_kind):
            rng = np.random.default_rng(10 * k + i)
            y, x = np.mgrid[0:40, 0:40]
            base = {"red": np.dstack([x * 0 + 200, x * 0 + 30, x * 0 + 30]),
                    "stripes": np.dstack([(y // 4 % 2) * 255] * 3),
                    "checker": np.dstack([((x // 5 + y // 5) % 2) * 255] * 3)}[kind]
            pixels = np.clip(base + rng.normal(0, 4, base.shape), 0, 255).astype(np.uint8)
            rel = f"{kind}/{kind}_{i}.png"
            (root / kind).mkdir(parents=True, exist_ok=True)
            Image.fromarray(pixels).save(root / rel)
            if i < per_kind - 1:
                rows.append((rel, f"a {kind} picture number {i}"))
            if i == 0:
                rows.append((rel, f"another {kind} thing"))
    with open(root / "captions.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["file", "caption"])
        writer.writerows(rows)


def other_home(run: Runner, name: str) -> Runner:
    return Runner(run.binary, run.home.parent / name, run.models)


def queries(run: Runner, photos: Path, model: str) -> dict:
    """The answers to one query of each kind, as --json gives them."""
    image = photos / "stripes" / "stripes_1.png"
    asks = {"text": ["--text", "a red picture"],
            "image": ["--image", image],
            "against_text": ["--image", image, "--against", "text"],
            "against_multimodal": ["--image", image, "--against", "multimodal"],
            "fused": ["--text", "2:checker", "--text", "-red", "--image", image]}
    out = {}
    for name, args in asks.items():
        result = run.json("query", "--json", "--in", photos, "--model", model, "-k", "20", *args)
        out[name] = [(r["path"], r["score"], r["caption"], r["category"])
                     for r in result["results"]]
        assert out[name], (name, result)
    return out


def indexed_export(run: Runner, tmp_path: Path, model: str, *export_args) -> tuple:
    photos = tmp_path / "photos"
    write_photos(photos)
    # Exact vectors on both sides, so the round trip can be compared value for value.
    run.json("index", photos, "--model", model, "--json", "--vectors", "fp32")
    out = tmp_path / f"export-{model}"
    summary = run.json("export-vectors", out, "--model", model, "--json", *export_args)
    return photos, out, summary


@pytest.mark.parametrize("model", ["blip-base", "blip2-coco"])
def test_an_imported_export_answers_like_the_index(run, tmp_path, model):
    photos, out, summary = indexed_export(run, tmp_path, model)
    assert (summary["items"], summary["captions"], summary["dtype"]) == (9, 9, "float32")
    assert summary["warnings"] == []
    assert sorted(p.name for p in out.iterdir()) == sorted(summary["files"]) == sorted(
        ["format.json", "metadata.jsonl", "image_proj.npy", "image_embed.npy", "text_proj.npy",
         "multimodal.npy"])
    fmt = json.loads((out / "format.json").read_text())
    assert (fmt["format"], fmt["format_version"], fmt["items"]) == ("mmsearch-vectors", 1, 9)
    assert fmt["model"] == summary["model"]
    assert set(fmt["checksums"]) == set(summary["files"]) - {"format.json"}
    dims = json.loads((run.models / model / "mmsearch.json").read_text())["dims"]
    proj = np.load(out / "image_proj.npy")
    assert proj.shape == (9, max(1, dims["query_tokens"]), dims["embed"])
    assert np.load(out / "image_embed.npy").shape == (9, dims["hidden"])
    assert np.allclose(np.linalg.norm(proj, axis=-1), 1, atol=1e-5)
    lines = (out / "metadata.jsonl").read_text().splitlines()
    assert len(lines) == 9
    first = json.loads(lines[0])
    assert Path(first["file"]).is_absolute() and first["category"] in KINDS

    fresh = other_home(run, "imported")
    imported = fresh.json("import", out, "--model", model, "--json", "--vectors", "fp32")
    assert (imported["items"], imported["captions"], imported["local_files"]) == (9, 9, 9)
    assert imported["arrays"] == ["image_proj", "image_embed", "text_proj", "multimodal"]
    assert imported["items_per_second"] > 0 and imported["dry_run"] is False
    assert queries(fresh, photos, model) == queries(run, photos, model)

    # The imported files exist here with the same size, mtime, captions and category: a later
    # index finds them unchanged.
    again = fresh.json("index", photos, "--model", model, "--json")
    assert (again["found"], again["unchanged"], again["indexed"]) == (9, 9, 0), again

    # An export of the imported store is the same folder again.
    out2 = tmp_path / "export-again"
    fresh.json("export-vectors", out2, "--model", model, "--json")
    assert json.loads((out2 / "format.json").read_text())["checksums"] == fmt["checksums"]


def test_float16_and_relative_exports_import_elsewhere(run, tmp_path):
    photos, out, summary = indexed_export(run, tmp_path, "blip2-coco", "--npy-dtype", "f16",
                                          "--relative", "--in", tmp_path / "photos")
    assert summary["dtype"] == "float16"
    assert np.load(out / "image_proj.npy").dtype == np.float16
    assert json.loads((out / "metadata.jsonl").read_text().splitlines()[0])["file"] == \
        "checker/checker_0.png"
    moved = tmp_path / "moved"
    photos.rename(moved)
    fresh = other_home(run, "elsewhere")
    imported = fresh.json("import", out, "--model", "blip2-coco", "--root", moved, "--json")
    assert (imported["dtype"], imported["root"], imported["local_files"]) == \
        ("float16", str(moved), 9)
    photos.mkdir()  # the original scope, empty: nothing of it was imported
    result = fresh.json("query", "--json", "--in", moved, "--model", "blip2-coco",
                        "--text", "a red picture", "-k", "20")
    assert result["searched"] == 9
    assert all(r["path"].startswith(str(moved) + "/") for r in result["results"])

    # The files need not be on this machine: a scope that does not exist here is searched when
    # the store holds items under it, and a typo is still an input error naming the flag.
    moved.rename(tmp_path / "gone")
    again = fresh.json("query", "--json", "--in", moved, "--model", "blip2-coco",
                       "--text", "a red picture", "-k", "20")
    assert [r["path"] for r in again["results"]] == [r["path"] for r in result["results"]]
    sub = fresh.json("query", "--json", "--in", moved / "checker", "--model", "blip2-coco",
                     "--text", "a red picture", "-k", "20")
    assert sub["searched"] == 3  # the checker sub-folder alone
    typo = fresh("query", "--in", tmp_path / "movde", "--text", "x", check=EXIT_INPUT)
    assert "no such folder" in typo.stderr and "--in" in typo.stderr
    not_folder = fresh("query", "--in", out / "metadata.jsonl", "--text", "x", check=EXIT_INPUT)
    assert "not a folder" in not_folder.stderr


def synthetic_folder(d: Path, n: int, rows: int, embed: int, captions_per_item: int = 1,
                     dtype=np.float32) -> None:
    """Vectors as another machine would write them with numpy: no format.json."""
    d.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    proj = rng.standard_normal((n, rows, embed)).astype(np.float32)
    proj /= np.linalg.norm(proj, axis=-1, keepdims=True)
    np.save(d / "image_proj.npy", proj.astype(dtype))
    text = rng.standard_normal((n * captions_per_item, embed)).astype(np.float32)
    text /= np.linalg.norm(text, axis=-1, keepdims=True)
    np.save(d / "text_proj.npy", text.astype(dtype))
    with open(d / "metadata.jsonl", "w") as f:
        for i in range(n):
            f.write(json.dumps({"file": f"remote/img_{i:05d}.jpg", "category": f"c{i % 4}",
                                "captions": [f"caption {i} {c}" for c in
                                             range(captions_per_item)]}) + "\n")


def tiny_dims(run: Runner, model: str) -> tuple:
    dims = json.loads((run.models / model / "mmsearch.json").read_text())["dims"]
    return max(1, dims["query_tokens"]), dims["embed"]


def test_vectors_written_by_numpy_in_float16_without_optional_files(run, tmp_path):
    q, e = tiny_dims(run, "blip2-coco")
    d = tmp_path / "gpu-box"
    synthetic_folder(d, 20, q, e, dtype=np.float16)
    out = run.json("import", d, "--model", "blip2-coco", "--json")
    assert (out["items"], out["captions"], out["local_files"], out["dtype"]) == \
        (20, 20, 0, "float16")
    assert out["arrays"] == ["image_proj", "text_proj"]
    assert out["root"] == str(d)
    # The files are not here (query --in needs a folder that exists: the vectors' folder is
    # above them, as the paths are relative to it).
    result = run.json("query", "--json", "--in", d, "--model", "blip2-coco",
                      "--text", "anything", "-k", "50")
    assert result["searched"] == 20
    assert {r["category"] for r in result["results"]} == {"c0", "c1", "c2", "c3"}
    texts = run.json("query", "--json", "--in", d, "--model", "blip2-coco",
                     "--text", "anything", "--against", "text", "-k", "50")
    assert texts["searched"] == 20 and texts["results"][0]["caption"].startswith("caption ")


def test_dry_run_checks_and_writes_nothing(run, tmp_path):
    q, e = tiny_dims(run, "blip-base")
    d = tmp_path / "v"
    synthetic_folder(d, 5, q, e)
    out = run.json("import", d, "--model", "blip-base", "--dry-run", "--json")
    assert (out["items"], out["dry_run"]) == (5, True)
    assert not (run.home / "index.sqlite3").exists()


def expect_error(run: Runner, code: int, *args) -> str:
    proc = run(*args)
    assert proc.returncode == code, f"exit {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
    assert proc.stdout == ""
    return proc.stderr


def test_validation_errors_name_the_problem(run, tmp_path):
    _, export, _ = indexed_export(run, tmp_path, "blip2-coco")
    fresh = other_home(run, "errors")

    # Another model: format.json names the one that computed them.
    err = expect_error(fresh, EXIT_MODEL, "import", export, "--model", "blip-base")
    assert "computed with blip2-coco@" in err and "--model blip2-coco" in err
    # Without format.json the shapes give it away: 32 query vectors, not 1.
    (export / "format.json").rename(tmp_path / "format.json.saved")
    q, e = tiny_dims(run, "blip2-coco")
    err = expect_error(fresh, EXIT_INPUT, "import", export, "--model", "blip-base")
    assert f"image_proj.npy: shape [9, {q}, {e}], but blip-base@" in err
    assert f"expects [9, 1, {tiny_dims(run, 'blip-base')[1]}]" in err
    (tmp_path / "format.json.saved").rename(export / "format.json")

    # A changed file fails its checksum, unless told to skip them.
    meta = export / "metadata.jsonl"
    original = meta.read_text()
    meta.write_text(original.replace("picture number 0", "picture number 7", 1))
    err = expect_error(fresh, EXIT_INPUT, "import", export, "--model", "blip2-coco")
    assert "metadata.jsonl: checksum xxh64:" in err and "--skip-checksums" in err
    fresh.json("import", export, "--model", "blip2-coco", "--skip-checksums", "--dry-run",
               "--json")
    (export / "format.json").unlink()

    # One line too many, and bad JSON on line 2.
    meta.write_text(original + '{"file": "extra.png"}\n')
    err = expect_error(fresh, EXIT_INPUT, "import", export, "--model", "blip2-coco")
    assert "image_proj.npy: 9 rows, but metadata.jsonl has 10 lines" in err
    lines = original.splitlines()
    meta.write_text("\n".join([lines[0], '{"file": "x.png", "captions": [}'] + lines[2:]) + "\n")
    err = expect_error(fresh, EXIT_INPUT, "import", export, "--model", "blip2-coco")
    assert "metadata.jsonl:2: not valid JSON" in err
    meta.write_text("\n".join([lines[0], '{"captions": ["x"]}'] + lines[2:]) + "\n")
    err = expect_error(fresh, EXIT_INPUT, "import", export, "--model", "blip2-coco")
    assert 'metadata.jsonl:2: no "file"' in err
    meta.write_text(original)

    # A row that is not unit length.
    proj = np.load(export / "image_proj.npy")
    proj[4, 3] *= 3
    np.save(export / "image_proj.npy", proj)
    err = expect_error(fresh, EXIT_INPUT, "import", export, "--model", "blip2-coco")
    assert "image_proj.npy: row 4 vector 3 has norm 3" in err

    # The wrong dtype, and no image_proj at all.
    np.save(export / "image_proj.npy", proj.astype(np.float64))
    err = expect_error(fresh, EXIT_INPUT, "import", export, "--model", "blip2-coco")
    assert "image_proj.npy: not a supported .npy file: dtype <f8" in err
    (export / "image_proj.npy").unlink()
    err = expect_error(fresh, EXIT_INPUT, "import", export, "--model", "blip2-coco")
    assert "image_proj.npy: missing" in err

    # A newer format version is refused, saying so.
    (export / "format.json").write_text('{"format": "mmsearch-vectors", "format_version": 2}')
    err = expect_error(fresh, EXIT_INPUT, "import", export, "--model", "blip2-coco")
    assert "format version 2 by a newer mmsearch" in err and "upgrade mmsearch" in err

    assert _stored_files(fresh.home / "index.sqlite3") == 0  # nothing above stored anything
    expect_error(fresh, EXIT_INPUT, "import", tmp_path / "nowhere", "--model", "blip2-coco")
    expect_error(fresh, EXIT_USAGE, "import", export)  # --model is required
    expect_error(fresh, EXIT_MODEL, "import", export, "--model", "no-such-model")


def test_export_errors(run, tmp_path):
    err = expect_error(run, EXIT_INDEX, "export-vectors", tmp_path / "out", "--model",
                       "blip-base")
    assert "nothing has been indexed yet" in err
    photos = tmp_path / "photos"
    write_photos(photos, per_kind=1)
    run.json("index", photos, "--model", "blip-base", "--json")
    err = expect_error(run, EXIT_INDEX, "export-vectors", tmp_path / "out", "--model",
                       "blip2-coco")
    assert "holds no vectors of blip2-coco@" in err and "blip-base@" in err
    expect_error(run, EXIT_USAGE, "export-vectors", tmp_path / "out", "--model", "blip-base",
                 "--npy-dtype", "f8")
    (tmp_path / "file").write_text("x")
    expect_error(run, EXIT_INPUT, "export-vectors", tmp_path / "file" / "out", "--model",
                 "blip-base")


def _stored_files(db: Path) -> int:
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


def test_kill_9_during_import_then_rerun_redoes_it(run, tmp_path):
    q, e = tiny_dims(run, "blip-base")
    total = 4000
    d = tmp_path / "v"
    synthetic_folder(d, total, q, e)
    db = run.home / "index.sqlite3"
    env = dict(os.environ, MMSEARCH_HOME=str(run.home), OMP_NUM_THREADS="1", MMSEARCH_DTYPE="fp32")
    # One item per transaction keeps the import slow enough to be killed half-way.
    proc = subprocess.Popen([str(run.binary), "--models", str(run.models), "import", d,
                             "--model", "blip-base", "--batch-size", "1", "-q"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    try:
        deadline = time.monotonic() + 60
        while _stored_files(db) < 50 and time.monotonic() < deadline:
            assert proc.poll() is None, "the import finished before it could be killed"
            time.sleep(0.01)
        assert proc.poll() is None, "the import finished before it could be killed"
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.kill()
        proc.communicate()
    assert proc.returncode == -signal.SIGKILL
    committed = _stored_files(db)
    assert 50 <= committed < total, committed
    result = run.json("query", "--json", "--in", d, "--model", "blip-base",
                      "--text", "x", "-k", "5")
    assert result["searched"] == committed

    out = run.json("import", d, "--model", "blip-base", "--json")
    assert out["items"] == total
    assert _stored_files(db) == total  # replaced by path, nothing doubled
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    assert con.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    con.close()
