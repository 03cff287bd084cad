"""Captions files through the real binary: damaged quoting is an input error unless
`index --lenient-captions`, rows for missing files and exact repeats are reported, NFC and NFD
names match, spreadsheet headers are read, and captions per image are bounded (and embedded
in chunks of the batch size)."""
import json
import unicodedata
from pathlib import Path

import pytest

from test_cli_search import EXACT, EXIT_INPUT, EXIT_OK, query, save_image, summary

MODEL = ("--model", "blip-base")


def captions_of(run, folder) -> set:
    out = query(run, "--in", folder, *MODEL, "--against", "text", "--text", "x", "-k", "100000")
    return {(Path(r["path"]).name, r["caption"]) for r in out["results"]}


def three_images(d: Path):
    for i, kind in enumerate(["red", "checker", "gradient"]):
        save_image(d / f"{'abc'[i]}.png", kind, i)


@pytest.mark.parametrize("fmt", ["csv", "tsv"])
def test_an_unterminated_quote_stops_the_run_unless_lenient(run, tmp_path, fmt):
    d = tmp_path / "photos"
    three_images(d)
    sep = "," if fmt == "csv" else "\t"
    name = f"captions.{fmt}"
    (d / name).write_text(f"file{sep}caption\n"
                          f"a.png{sep}fine\n"
                          f"b.png{sep}\"broken caption\n"
                          f"c.png{sep}third\n")
    proc = run("index", d, "--json", *MODEL)
    assert proc.returncode == EXIT_INPUT, proc.stderr
    assert f"{d / name}: line 3: " in proc.stderr
    assert "unterminated quote" in proc.stderr and "--lenient-captions" in proc.stderr
    # Nothing was indexed: a rerun after the fix starts clean.
    assert run("query", "--in", d, *MODEL, "--text", "x").returncode != EXIT_OK

    proc = run("index", d, "--json", *MODEL, "--lenient-captions")
    assert proc.returncode == EXIT_OK, proc.stderr
    s = json.loads(proc.stdout)
    assert (s["indexed"], s["failed"]) == (3, 0), s
    assert len(s["warnings"]) == 1 and f"{d / name}: line 3: " in s["warnings"][0], s["warnings"]
    assert f"{name}: line 3: " in proc.stderr
    # The row that had swallowed the rest is skipped; the rows after it are back.
    assert captions_of(run, d) == {("a.png", "fine"), ("c.png", "third")}


def test_a_runaway_quote_that_a_later_quote_closes_is_caught(run, tmp_path):
    # libcsv on its own gives a.png a two-line caption and loses b.png's row without a word.
    d = tmp_path / "photos"
    three_images(d)
    (d / "captions.csv").write_text('file,caption\na.png,"left open\nb.png,a 12"\nc.png,ok\n')
    proc = run("index", d, *MODEL)
    assert proc.returncode == EXIT_INPUT, proc.stderr
    assert "captions.csv: line 2: " in proc.stderr
    assert "line 3, which reads as a row of its own" in proc.stderr
    s = summary(run, d, *MODEL, "--lenient-captions")
    assert [w.split(": line ")[1][:2] for w in s["warnings"]] == ["2:", "3:"], s["warnings"]
    assert captions_of(run, d) == {("c.png", "ok")}


def test_a_line_of_captions_jsonl_that_is_not_json(run, tmp_path):
    d = tmp_path / "photos"
    three_images(d)
    (d / "captions.jsonl").write_text('{"file": "a.png", "caption": "fine"}\n'
                                      '{"file": "b.png", "caption": "cut off\n'
                                      '{"file": "c.png", "caption": "also fine"}\n')
    proc = run("index", d, *MODEL)
    assert proc.returncode == EXIT_INPUT
    assert "captions.jsonl: line 2: not JSON" in proc.stderr and "--lenient-captions" in proc.stderr
    s = summary(run, d, *MODEL, "--lenient-captions")
    assert len(s["warnings"]) == 1 and "captions.jsonl: line 2: " in s["warnings"][0]
    assert captions_of(run, d) == {("a.png", "fine"), ("c.png", "also fine")}


def test_rows_for_missing_files_and_repeated_rows_are_reported(run, tmp_path):
    d = tmp_path / "photos"
    three_images(d)
    (d / "captions.csv").write_text("file,caption\n"
                                    "a.png,a red square\n"
                                    "gone.png,nobody\n"
                                    "a.png,a red square\n"
                                    "b.png,a checkerboard\n")
    proc = run("index", d, "--json", *MODEL)
    assert proc.returncode == EXIT_OK, proc.stderr
    warnings = json.loads(proc.stdout)["warnings"]
    assert len(warnings) == 2, warnings
    assert "captions.csv: line 3: 'gone.png' is not a file in the folder" in warnings[0]
    assert "captions.csv: line 4: repeats line 2" in warnings[1]
    for w in warnings:
        assert w in proc.stderr
    # The repeat is stored once.
    assert captions_of(run, d) == {("a.png", "a red square"), ("b.png", "a checkerboard")}
    out = query(run, "--in", d, *MODEL, "--against", "text", "--text", "x", "-k", "100")
    assert out["searched"] == 2


@pytest.mark.parametrize("disk_form,row_form", [("NFD", "NFC"), ("NFC", "NFD")])
def test_nfc_and_nfd_names_match_and_the_path_on_disk_is_kept(run, tmp_path, disk_form,
                                                              row_form):
    d = tmp_path / "photos"
    on_disk = unicodedata.normalize(disk_form, "dolci/crème brûlée.png")
    save_image(d / on_disk, "red", 1)
    row = unicodedata.normalize(row_form, "dolci/crème brûlée.png")
    assert row.encode() != on_disk.encode()
    (d / "captions.csv").write_text(f"file,caption\n{row},a burnt cream\n", encoding="utf-8")
    s = summary(run, d, *MODEL)
    assert (s["indexed"], s["warnings"]) == (1, []), s
    out = query(run, "--in", d, *MODEL, "--against", "text", "--text", "x")
    assert [(r["path"], r["caption"]) for r in out["results"]] == [(str(d / on_disk),
                                                                    "a burnt cream")]


def test_a_spreadsheet_header_with_capitals_spaces_and_a_bom(run, tmp_path):
    d = tmp_path / "photos"
    three_images(d)
    (d / "captions.csv").write_bytes(b"\xef\xbb\xbf File , Caption ,CATEGORY\r\n"
                                     b"a.png,a red square,Shapes\r\n")
    s = summary(run, d, *MODEL)
    assert s["warnings"] == [], s["warnings"]
    hits = {Path(r["path"]).name: r for r in
            query(run, "--in", d, *MODEL, "--against", "text", "--text", "x")["results"]}
    assert (hits["a.png"]["caption"], hits["a.png"]["category"]) == ("a red square", "Shapes")


def test_captions_per_image_are_bounded(run, tmp_path):
    d = tmp_path / "photos"
    three_images(d)
    # 3000 captions in a sidecar used to go through the model as one text batch.
    (d / "a.txt").write_text("".join(f"caption number {i}\n" for i in range(3000)))
    (d / "b.txt").write_text("x" * (4 * 2**20 + 1))
    (d / "c.txt").write_text("a gradient\n")
    s = summary(run, d, *MODEL)
    assert (s["indexed"], s["failed"]) == (3, 0), s
    assert any("a.txt" in w and "more than 1000 captions" in w for w in s["warnings"]), s
    assert any("b.txt" in w and "larger than 4 MiB" in w for w in s["warnings"]), s
    assert captions_of(run, d) == {("c.png", "a gradient")}


def test_captions_embedded_in_chunks_equal_one_pass(run, tmp_path):
    # Batch size 3 embeds the 14 captions in chunks of 3, one of them across two images;
    # batch size 64 embeds all of them in one. The stored vectors must be the same.
    d = tmp_path / "photos"
    three_images(d)
    words = ["pizza", "pasta", "risotto", "tiramisu", "gelato", "lasagne", "minestrone"]
    rows = [(n, f"a {'very ' * i}tasty {w} in {n[0]}") for n in ("a.png", "b.png")
            for i, w in enumerate(words)]
    (d / "captions.csv").write_text("file,caption\n" + "".join(f"{n},{c}\n" for n, c in rows))

    def scores(home_name, batch_size):
        run.home = tmp_path / home_name
        summary(run, d, *MODEL, *EXACT, "--batch-size", batch_size)
        got = {}
        for against in ("text", "multimodal"):
            out = query(run, "--in", d, *MODEL, "--against", against, "--text", "a red thing",
                        "-k", "100")
            got.update({(against, Path(r["path"]).name, r["caption"]): r["score"]
                        for r in out["results"]})
        return got

    one_pass, chunked = scores("home-one-pass", 64), scores("home-chunked", 3)
    assert len(one_pass) == 2 * len(rows) and one_pass.keys() == chunked.keys()
    for key in one_pass:
        assert chunked[key] == pytest.approx(one_pass[key], abs=1e-6), key
    # Each caption kept its own vectors: its own text finds it first (run.home is the chunked
    # store now).
    for name, caption in rows:
        out = query(run, "--in", d, *MODEL, "--against", "text", "--text", caption, "-k", "1")
        assert (Path(out["results"][0]["path"]).name, out["results"][0]["caption"]) == (
            name, caption)
