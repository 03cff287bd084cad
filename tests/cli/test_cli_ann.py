"""`mmsearch ann` and approximate search through the real binary: build, status, recall and drop
on an imported store, queries that use the index and `--exact` that does not, `--ann build` on
import, and a damaged index reported as a corrupt store (exit 5)."""
import json
from pathlib import Path

import numpy as np

from conftest import Runner

EXIT_INDEX = 5


def clustered_folder(d: Path, n: int, rows: int, embed: int) -> None:
    """Items around 20 themes (as photos are), one caption vector each, written as numpy would."""
    d.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(3)
    themes = rng.standard_normal((20, embed))
    image = themes[np.arange(n) % 20] + 0.6 * rng.standard_normal((n, embed))
    proj = image[:, None, :] + 0.2 * rng.standard_normal((n, rows, embed))
    proj /= np.linalg.norm(proj, axis=-1, keepdims=True)
    np.save(d / "image_proj.npy", proj.astype(np.float32))
    text = image + 0.5 * rng.standard_normal((n, embed))
    text /= np.linalg.norm(text, axis=-1, keepdims=True)
    np.save(d / "text_proj.npy", text.astype(np.float32))
    with open(d / "metadata.jsonl", "w") as f:
        for i in range(n):
            f.write(json.dumps({"file": f"remote/img_{i:05d}.jpg", "category": f"t{i % 20}",
                                "captions": [f"caption {i}"]}) + "\n")


def dims(run: Runner, model: str) -> tuple:
    d = json.loads((run.models / model / "mmsearch.json").read_text())["dims"]
    return max(1, d["query_tokens"]), d["embed"]


def top(run: Runner, d: Path, model: str, *extra) -> dict:
    return run.json("query", "--json", "--in", d, "--model", model, "--text", "a dish", "-k", "10",
                    *extra)


def test_build_status_query_recall_and_drop(run, tmp_path):
    for model in ["blip-base", "blip2-coco"]:
        q, e = dims(run, model)
        d = tmp_path / model
        clustered_folder(d, 1500, q, e)
        out = run.json("import", d, "--model", model, "--json", "--vectors", "fp32")
        assert out["ann_built"] is None, "far below the automatic threshold"
        status = run.json("ann", "status", "--model", model, "--json")
        assert status["index"] is None
        assert top(run, d, model)["approximate"] is False

        built = run.json("ann", "build", "--model", model, "--lists", "8", "--json")["index"]
        assert (built["entries"], built["lists"], built["uncovered_items"]) == (1500, 8, 0)
        every_list = top(run, d, model, "--nprobe", "8")
        exact = top(run, d, model, "--exact")
        assert every_list["approximate"] is True and every_list["nprobe"] == 8
        assert exact["approximate"] is False
        assert [(r["path"], r["score"]) for r in every_list["results"]] == \
            [(r["path"], r["score"]) for r in exact["results"]]

        recall = run.json("ann", "recall", "--model", model, "--nprobe", "1,8", "--queries", "20",
                          "--json")
        assert recall["queries"] == 20 and recall["query_source"] == "caption text vectors"
        by_probe = {r["nprobe"]: r["recall"] for r in recall["rows"]}
        assert by_probe[8] == 1.0
        assert 0.0 < by_probe[1] <= 1.0

        dropped = run.json("ann", "drop", "--model", model, "--json")
        assert dropped["dropped"] is True
        assert top(run, d, model)["approximate"] is False


def test_import_can_build_it_and_a_damaged_index_is_corrupt(run, tmp_path):
    q, e = dims(run, "blip-base")
    d = tmp_path / "vectors"
    clustered_folder(d, 800, q, e)
    out = run.json("import", d, "--model", "blip-base", "--json", "--ann", "build")
    assert out["ann_built"]["entries"] == 800
    text = run("ann", "status", "--model", "blip-base", check=0).stdout
    assert "800 entries" in text and "0 of 800 live items are outside it" in text
    index = next((run.home / "index.sqlite3.segments").glob("*.ann"))
    data = bytearray(index.read_bytes())
    for i in range(len(data) * 2 // 3, len(data) * 2 // 3 + 64):
        data[i] ^= 0x5A
    index.write_bytes(bytes(data))
    proc = run("query", "--in", d, "--model", "blip-base", "--text", "a dish", "--nprobe",
               str(out["ann_built"]["lists"]), check=EXIT_INDEX)
    assert "corrupt" in proc.stderr and "ann build" in proc.stderr
    assert top(run, d, "blip-base", "--exact")["results"], "--exact never reads the index"
    rebuilt = run.json("ann", "build", "--model", "blip-base", "--json")["index"]
    assert rebuilt["entries"] == 800
    assert top(run, d, "blip-base")["approximate"] is True
