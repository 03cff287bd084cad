"""Every free-text argument reaches the library byte for byte, through the real binary, and the
global options work on either side of the subcommand (issue 9)."""
import json

import pytest

from conftest import Runner

EXIT_USAGE, EXIT_INPUT = 2, 3

# Texts that CLI11 used to rewrite: its "[a,b]" list syntax, commas, leading dashes, quotes,
# and texts that start with the mark the CLI uses internally to keep them verbatim.
ODD_TEXTS = [
    "[x]", "[SEP][CLS]", "[a,b]", "a,b", "[a, b ,c]", "[]", "[,]", "[", "]", "-5 degrees",
    "--not-an-option", "-", "'single' \"double\"", "\x1e[x]", "\x1eplain", "tiramisù [dolce]",
    "デザート, 甜点", "Пельмени [x,y]",
]


def tokenize_all(run, model, texts, *extra):
    proc = run("tokenize", "--model", model, "--max-tokens", "0", *extra, "--", *texts, check=0)
    # split("\n"), not splitlines(): texts may hold U+2028 and other line separators.
    lines = [json.loads(line) for line in proc.stdout.split("\n") if line]
    assert len(lines) == len(texts)
    return lines


def test_odd_texts_reach_the_tokenizer_unchanged(run):
    for line, text in zip(tokenize_all(run, "blip2-vitL", ODD_TEXTS, "--raw"), ODD_TEXTS):
        assert line["text"] == text
        assert line["normalised"] == text  # --raw: nothing but the tokenizer touches it


def test_binary_matches_every_golden_tokenizer_case(run, shared):
    """The 352 tokenizer goldens (made by transformers' BertTokenizer), through argv."""
    cases = [json.loads(line)
             for line in (shared / "golden/tokenizer/cases.jsonl").read_text().split("\n") if line]
    cases = [c for c in cases if "\x00" not in c["input"]]  # argv cannot carry NUL
    texts = [c["input"] for c in cases]
    blip2 = tokenize_all(run, "blip2-vitL", texts)
    raw = tokenize_all(run, "blip2-vitL", texts, "--raw")
    blip1 = tokenize_all(run, "blip-base", texts)
    for case, b2, r, b1 in zip(cases, blip2, raw, blip1):
        assert b2["text"] == case["input"], case["id"]
        assert b2["normalised"] == case["pre_caption"], case["id"]
        assert b2["ids"] == case["input_ids"], case["id"]
        assert r["ids"] == case["raw_input_ids"], case["id"]
        assert b1["ids"] == case["blip1_input_ids"], case["id"]


def test_from_file_reads_one_text_per_line(run, tmp_path):
    lines = ["[a,b]", "", "-dash", "crlf"]
    path = tmp_path / "texts.txt"
    path.write_bytes(("\n".join(lines[:3]) + "\n" + lines[3] + "\r\n").encode())
    from_file = [json.loads(l)["text"] for l in run(
        "tokenize", "--raw", "--model", "blip-base", "--from-file", path, check=0).stdout
        .splitlines()]
    assert from_file == lines
    stdin = [json.loads(l)["text"] for l in run(
        "tokenize", "--raw", "--model", "blip-base", "first", "--from-file", "-", check=0,
        input="[SEP][CLS]\nlast").stdout.splitlines()]
    assert stdin == ["first", "[SEP][CLS]", "last"]
    proc = run("tokenize", "--model", "blip-base", "--from-file", tmp_path / "missing.txt")
    assert proc.returncode == EXIT_INPUT and "missing.txt" in proc.stderr
    proc = run("tokenize", "--model", "blip-base")
    assert proc.returncode == EXIT_USAGE and "--from-file" in proc.stderr


def test_embed_texts_are_verbatim(run, tmp_path):
    path = tmp_path / "more.txt"
    path.write_text("[from,file]\n")
    result = run.json("embed", "--model", "blip-base", "--mode", "text", "--text", "[a,b]",
                      "--text", "[SEP][CLS]", "--text=-dash", "--from-file", path)
    assert result["texts"] == ["[a,b]", "[SEP][CLS]", "-dash", "[from,file]"]


def test_query_terms_are_verbatim(run, tmp_path):
    photos = tmp_path / "photos"
    photos.mkdir()
    from PIL import Image
    for i in range(3):
        Image.new("RGB", (32, 32), (80 * i, 40, 200 - 60 * i)).save(photos / f"{i}.png")
    run("index", photos, "--model", "blip-base", check=0)
    result = run.json("query", "--in", photos, "--text", "[a,b]", "--text", "-[c,d]", "--json")
    terms = [(t["value"], t["weight"]) for t in result["terms"]]
    # "-[c,d]" is the text "[c,d]" subtracted (the documented weight syntax), not split.
    assert terms == [("[a,b]", 1.0), ("[c,d]", -1.0)]


def test_global_options_work_after_the_subcommand(mmsearch_bin, tiny_models, tmp_path):
    run = Runner(mmsearch_bin, tmp_path / "home", None)  # no --models before the subcommand
    photos = tmp_path / "photos"
    photos.mkdir()
    from PIL import Image
    Image.new("RGB", (32, 32), (10, 200, 30)).save(photos / "green.png")
    run("index", photos, "--model", "blip-base", "--models", tiny_models, "--threads", "1",
        "-q", check=0)
    proc = run("query", "--text", "green", "--in", photos, "--threads", "1", "--models",
               tiny_models, "--json", check=0)
    assert json.loads(proc.stdout)["results"][0]["path"].endswith("green.png")
    # Before the subcommand, as before.
    run("--models", tiny_models, "--threads", "1", "tokenize", "--model", "blip-base", "x",
        check=0)
    # -q after the subcommand silences the info log.
    proc = run("index", photos, "--model", "blip-base", "--models", tiny_models, "-q", check=0)
    assert proc.stderr == ""


@pytest.mark.parametrize("command", ["models", "tokenize", "embed", "index", "query",
                                     "simmatrix", "eval", "translate"])
def test_each_subcommand_help_lists_the_global_options(run, command):
    help_text = run(command, "--help", check=0).stdout
    assert "Global options" in help_text
    for option in ["--models", "--threads", "--dtype", "--no-verify", "--verbose", "--quiet"]:
        assert option in help_text, (command, option)
