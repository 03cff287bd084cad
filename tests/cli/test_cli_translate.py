"""`mmsearch index/query --translate LANG` (issue 6, item 3), on tiny bundles.

The tiny Marian bundle translates into deterministic nonsense, so the tests check plumbing, not
meaning: what is stored and shown (original + English), that the cache spares the translator on
a rerun (its model files are deleted after the first run), that a change of translator is
noticed, and the error paths.
"""
import json
import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import REPO, TINY_NAMES, Runner

EXIT_OK, EXIT_USAGE, EXIT_MODEL = 0, 2, 4
MARIAN = "opus-mt-it-en"
CAPTIONS = {
    "pasta/a.png": "lasagne al ragù",
    "pasta/b.png": "spaghetti alla carbonara",
    "dolci/c.png": "tiramisù con caffè",
    "dolci/d.png": "lasagne al ragù",  # the same caption twice: translated once
}


@pytest.fixture(scope="session")
def marian_bundle(tmp_path_factory) -> Path:
    """The tiny opus-mt-it-en bundle: the one tests/cpp/translate.cmake exported into the build
    tree when present, else exported here (a few seconds)."""
    built = REPO / "build" / "tests" / "tmp" / "marian" / "tiny" / MARIAN
    if (built / "mmsearch.json").exists():
        return built
    out = tmp_path_factory.mktemp("marian")
    subprocess.run(["/usr/bin/python3", str(REPO / "scripts" / "export_models.py"), "export",
                    MARIAN, "--tiny", "--out", str(out)], check=True, capture_output=True)
    found = [p.parent for p in out.rglob("mmsearch.json")]
    assert found, f"no bundle exported under {out}"
    return found[0]


@pytest.fixture
def models(tmp_path, tiny_models, marian_bundle) -> Path:
    """A models folder: the tiny vision bundles (links) and a private copy of the translator,
    so a test may break it."""
    d = tmp_path / "models"
    d.mkdir()
    for name in TINY_NAMES:
        (d / name).symlink_to(tiny_models / name)
    shutil.copytree(marian_bundle, d / MARIAN)
    return d


@pytest.fixture
def trun(mmsearch_bin, models, tmp_path) -> Runner:
    return Runner(mmsearch_bin, tmp_path / "home", models)


def make_photos(root: Path) -> Path:
    rng = np.random.default_rng(0)
    for i, rel in enumerate(CAPTIONS):
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        pixels = np.full((40, 40, 3), (40 + 50 * i, 200 - 40 * i, 90), np.float64)
        pixels += rng.normal(0, 3, pixels.shape)
        Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).save(path)
    lines = ["file,caption"] + [f"{rel},{caption}" for rel, caption in CAPTIONS.items()]
    (root / "captions.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return root


def translate(run, *texts) -> list:
    proc = run("translate", "--model", MARIAN, *texts, check=EXIT_OK)
    return proc.stdout.splitlines()


def index(run, folder, *args, expect=EXIT_OK):
    proc = run("index", folder, "--model", "blip-base", "--json", *args, check=expect)
    return (json.loads(proc.stdout) if expect == EXIT_OK else None), proc.stderr


def captions_by_path(run, folder) -> dict:
    out = run.json("query", "--in", folder, "--model", "blip-base", "--text", "x", "--against",
                   "text", "-k", "100", "--json")
    return {Path(h["path"]).relative_to(folder).as_posix(): (h["caption"], h.get("caption_en"))
            for h in out["results"]}


def test_index_translates_stores_both_and_rerun_uses_the_cache(trun, tmp_path, models):
    photos = make_photos(tmp_path / "photos")
    english = dict(zip(sorted(set(CAPTIONS.values())), translate(trun, *sorted(set(CAPTIONS.values())))))
    assert all(english.values())

    summary, err = index(trun, photos, "--translate", "it")
    assert (summary["found"], summary["indexed"]) == (4, 4)
    assert summary["translated"] == 3 and summary["translations_cached"] == 0  # deduplicated
    assert "loading translator" in err

    stored = captions_by_path(trun, photos)
    assert stored == {rel: (c, english[c]) for rel, c in CAPTIONS.items()}

    # The table shows "English (original)".
    table = trun("query", "--in", photos, "--text", "x", "--against", "text", "-k", "100",
                 check=EXIT_OK).stdout
    assert "(spaghetti alla carbonara)" in table or english["spaghetti alla carbonara"][:30] in table

    # Rerun with the translator's weights gone: everything comes from the cache, nothing changes.
    for name in ("encoder.pt", "decoder.pt"):
        (models / MARIAN / name).unlink()
    summary, err = index(trun, photos, "--translate", "it")
    assert (summary["unchanged"], summary["indexed"], summary["reused"]) == (4, 0, 0)
    assert summary["translated"] == 0 and summary["translations_cached"] == 3
    assert "loading translator" not in err
    assert captions_by_path(trun, photos) == stored

    # A touched file is re-checked by hash and reuses its vectors, still without the model.
    os.utime(photos / "pasta" / "a.png", (1e9, 1e9))
    summary, _ = index(trun, photos, "--translate", "it")
    assert (summary["reused"], summary["unchanged"], summary["translated"]) == (1, 3, 0)

    # A new caption needs the translator: now its absence is an error (exit 4), and the index
    # is left as it was.
    with open(photos / "captions.csv", "a", encoding="utf-8") as f:
        f.write("dolci/c.png,una torta nuova\n")
    _, err = index(trun, photos, "--translate", "it", expect=EXIT_MODEL)
    assert "decoder.pt" in err or "encoder.pt" in err
    assert captions_by_path(trun, photos) == stored


def test_a_change_of_translator_is_noticed(trun, tmp_path):
    photos = make_photos(tmp_path / "photos")
    summary, _ = index(trun, photos)
    assert summary["indexed"] == 4
    assert all(en is None for _, en in captions_by_path(trun, photos).values())

    summary, _ = index(trun, photos, "--translate", "it")  # newly translated: re-embedded
    assert summary["indexed"] + summary["reused"] == 4 and summary["unchanged"] == 0
    assert all(en for _, en in captions_by_path(trun, photos).values())
    text_vectors = trun.json("query", "--in", photos, "--text", "x", "--against", "text", "-k",
                             "100", "--json")["results"]

    summary, _ = index(trun, photos, "--translate", "it")
    assert summary["unchanged"] == 4

    summary, _ = index(trun, photos)  # translation dropped: back to the originals
    assert summary["indexed"] + summary["reused"] == 4 and summary["unchanged"] == 0
    assert all(en is None for _, en in captions_by_path(trun, photos).values())
    plain = trun.json("query", "--in", photos, "--text", "x", "--against", "text", "-k",
                      "100", "--json")["results"]
    assert [h["score"] for h in plain] != [h["score"] for h in text_vectors]


def test_query_translate_reports_and_searches_the_translation(trun, tmp_path):
    photos = make_photos(tmp_path / "photos")
    index(trun, photos, "--translate", "it")
    query_text = "lasagne al ragù"
    (expected,) = translate(trun, query_text)

    proc = trun("query", "--in", photos, "--text", query_text, "--translate", "it", "--json",
                "--against", "text", check=EXIT_OK)
    out = json.loads(proc.stdout)
    assert out["terms"][0]["original"] == query_text
    assert out["terms"][0]["value"] == expected
    assert out["translator"].startswith(MARIAN + "@")
    assert f"{query_text} → {expected}" in proc.stderr
    # The same search as giving the English text directly.
    direct = trun.json("query", "--in", photos, "--text", expected, "--against", "text",
                       "--json")
    assert [(h["path"], h["score"]) for h in out["results"]] == \
        [(h["path"], h["score"]) for h in direct["results"]]
    assert all("caption_en" in h for h in out["results"])

    # The caption was indexed: its translation is cached, so a query with the same text runs
    # without the translator's model.
    proc = trun("query", "--in", photos, "--text", query_text, "--translate", "it", "--json",
                "--against", "text", check=EXIT_OK)
    assert "loading translator" not in proc.stderr and "(cached)" in proc.stderr

    # A montage shows the English and the original text.
    trun("query", "--in", photos, "--text", "una torta", "--translate", "it", "--montage",
         tmp_path / "m.png", check=EXIT_OK)
    assert (tmp_path / "m.png").stat().st_size > 0


def test_missing_translator_bundle_is_a_model_error(trun, tmp_path, models):
    photos = make_photos(tmp_path / "photos")
    shutil.rmtree(models / MARIAN)
    proc = trun("index", photos, "--model", "blip-base", "--translate", "it", check=EXIT_MODEL)
    assert "opus-mt-it-en" in proc.stderr and "export_models.py" in proc.stderr
    assert not (trun.home / "index.sqlite3").exists()  # stopped before touching the store
    index(trun, photos)
    proc = trun("query", "--in", photos, "--text", "pizza", "--translate", "it", check=EXIT_MODEL)
    assert "opus-mt-it-en" in proc.stderr
    proc = trun("query", "--in", photos, "--text", "pizza", "--translator", "nope",
                check=EXIT_MODEL)
    assert "'nope' not found" in proc.stderr


def test_unknown_or_bad_language_codes(trun, tmp_path):
    photos = make_photos(tmp_path / "photos")
    proc = trun("index", photos, "--model", "blip-base", "--translate", "xx", check=EXIT_MODEL)
    assert "no translation model for language 'xx'" in proc.stderr
    assert "opus-mt-xx-en" in proc.stderr
    proc = trun("index", photos, "--model", "blip-base", "--translate", "it/../en",
                check=EXIT_USAGE)
    assert "not a language code" in proc.stderr
    proc = trun("query", "--in", photos, "--text", "pizza", "--translate", "en", check=EXIT_USAGE)
    assert "English" in proc.stderr
    # --translator naming a bundle for another source language.
    proc = trun("index", photos, "--model", "blip-base", "--translate", "de", "--translator",
                MARIAN, check=EXIT_USAGE)
    assert "translates from 'it'" in proc.stderr


def test_translate_passes_texts_through_verbatim(trun, tmp_path):
    """Brackets, commas and leading dashes reach the translator as typed (issue 9)."""
    texts = ["[a,b]", "[SEP][CLS]", "-5 gradi", "una, due"]
    path = tmp_path / "more.txt"
    path.write_text("[dal,file]\n")
    proc = trun("translate", "--model", MARIAN, "--json", "--from-file", path, "--", *texts,
                check=0)
    sources = [json.loads(line)["source"] for line in proc.stdout.split("\n") if line]
    assert sources == texts + ["[dal,file]"]
