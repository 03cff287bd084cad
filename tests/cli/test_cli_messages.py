"""Messages and report edge cases a hostile tester found unclear or wrong (issue 12): result
files that cannot be written, modules of other dimensions under --no-verify, a bundle changed
behind the verify cache's back, tables of non-ASCII text, a folder indexed by two models,
`eval` on one image, `simmatrix --kind all` without captions, a --rebuild under a pixel
limit that every file fails, an unknown MMSEARCH_DEFAULT_MODEL and a relative MMSEARCH_HOME.
"""
import csv
import json
import os
import shutil
import subprocess
import sys
import unicodedata
from pathlib import Path

import pytest

from test_cli_search import (EXIT_INDEX, EXIT_INPUT, EXIT_MODEL, EXIT_OK, indexed_paths,
                             make_scene, save_image, summary)

REPO = Path(__file__).resolve().parents[2]


def private_models(run, tmp_path, names=("blip-base",)) -> Path:
    """Copies of tiny bundles that a test may damage or remove."""
    models = tmp_path / "models"
    for name in names:
        shutil.copytree(run.models / name, models / name)
    run.models = models
    return models


# ---------------------------------------------------------------------------------------------
# Result files that cannot be written.

def test_montage_that_cannot_be_written_names_the_reason_and_keeps_the_results(run, tmp_path):
    photos = tmp_path / "photos"
    for i, kind in enumerate(["red", "blue", "checker"]):
        save_image(photos / f"{kind}.png", kind, seed=i)
    run("index", photos, "--model", "blip-base", check=EXIT_OK)
    args = ["query", "--in", photos, "--model", "blip-base", "--text", "red"]

    proc = run(*args, "--montage", tmp_path / "no" / "such" / "folder.png")
    assert proc.returncode == EXIT_INPUT, proc.stderr
    assert "--montage" in proc.stderr and "No such file or directory" in proc.stderr
    assert "OpenCV" not in proc.stderr and "cv::" not in proc.stderr
    assert "red.png" in proc.stdout  # the answer is printed before the montage is drawn

    proc = run(*args, "--montage", tmp_path, "--json")
    assert proc.returncode == EXIT_INPUT and "Is a directory" in proc.stderr, proc.stderr
    assert len(json.loads(proc.stdout)["results"]) == 3

    if Path("/dev/full").exists():
        proc = run(*args, "--montage", "/dev/full")
        assert proc.returncode == EXIT_INPUT and "disk full" in proc.stderr, proc.stderr

    # A montage that is written replaces an earlier file whole, and leaves no temporary behind.
    target = tmp_path / "montage.png"
    target.write_bytes(b"old")
    run(*args, "--montage", target, check=EXIT_OK)
    assert target.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert [p.name for p in tmp_path.iterdir() if ".tmp-" in p.name] == []


def test_simmatrix_output_that_cannot_be_written_names_out(run, tmp_path):
    photos = tmp_path / "photos"
    make_scene(photos)
    run("index", photos, "--model", "blip-base", check=EXIT_OK)
    blocker = tmp_path / "file"
    blocker.write_text("a file where a folder is expected")
    proc = run("simmatrix", "--in", photos, "--model", "blip-base", "--out", blocker / "m")
    assert proc.returncode == EXIT_INPUT, proc.stderr
    assert "--out" in proc.stderr and "Not a directory" in proc.stderr, proc.stderr


# ---------------------------------------------------------------------------------------------
# Bundles.

OTHER_DIMS_MODULE = """
import sys, torch
from typing import Tuple

class OtherDims(torch.nn.Module):
    # The bundle's own text module, with its projection cut to 8 dimensions: what a text.pt of
    # another model looks like to the binary.
    def __init__(self, path):
        super().__init__()
        self.path = path

    def forward(self, input_ids: torch.Tensor,
                attention_mask: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        t, p = self.path(input_ids, attention_mask)
        return t, p[:, :, :8]

torch.jit.script(OtherDims(torch.jit.load(sys.argv[1]).path)).save(sys.argv[2])
"""


def test_no_verify_with_a_module_of_other_dimensions_is_a_model_error(run, tmp_path):
    models = private_models(run, tmp_path)
    photos = tmp_path / "photos"
    save_image(photos / "red.png", "red", seed=1)
    run("index", photos, "--model", "blip-base", check=EXIT_OK)
    script = tmp_path / "other_dims.py"
    script.write_text(OTHER_DIMS_MODULE)
    text_pt = models / "blip-base" / "text.pt"
    subprocess.run(["/usr/bin/python3", script, text_pt, tmp_path / "other.pt"], check=True)
    shutil.copy(tmp_path / "other.pt", text_pt)

    proc = run("--no-verify", "query", "--in", photos, "--model", "blip-base", "--text", "red")
    assert proc.returncode == EXIT_MODEL, proc.stderr
    assert "text.pt" in proc.stderr and "text_embeds_proj" in proc.stderr, proc.stderr
    assert "--no-verify" in proc.stderr and "Traceback" not in proc.stderr
    # Verified, the checksum catches it first.
    proc = run("query", "--in", photos, "--model", "blip-base", "--text", "red")
    assert proc.returncode == EXIT_MODEL and "sha256" in proc.stderr, proc.stderr


def test_a_changed_bundle_file_with_its_mtime_restored_is_noticed(run, tmp_path):
    models = private_models(run, tmp_path)
    photos = tmp_path / "photos"
    save_image(photos / "red.png", "red", seed=1)
    run("index", photos, "--model", "blip-base", check=EXIT_OK)
    run("query", "--in", photos, "--text", "red", check=EXIT_OK)  # verified and cached

    text_pt = models / "blip-base" / "text.pt"
    before = text_pt.stat()
    data = bytearray(text_pt.read_bytes())
    data[len(data) // 2] ^= 0x01
    text_pt.write_bytes(bytes(data))
    os.utime(text_pt, ns=(before.st_atime_ns, before.st_mtime_ns))  # same size, same mtime
    assert (text_pt.stat().st_size, text_pt.stat().st_mtime_ns) == (before.st_size,
                                                                  before.st_mtime_ns)
    proc = run("query", "--in", photos, "--text", "red")
    assert proc.returncode == EXIT_MODEL, proc.stderr
    assert "text.pt does not match its sha256" in proc.stderr, proc.stderr


# ---------------------------------------------------------------------------------------------
# Tables.

def columns(text: str) -> int:
    """Terminal columns: 2 for wide characters, 0 for combining marks."""
    width = 0
    for ch in text:
        if unicodedata.combining(ch) or unicodedata.category(ch) in ("Mn", "Me", "Cf"):
            continue
        width += 2 if unicodedata.east_asian_width(ch) in ("W", "F") else 1
    return width


def test_table_columns_line_up_with_non_ascii_text(run, tmp_path):
    photos = tmp_path / "photos"
    names = ["crème_brûlée.png", "寿司.png", "plain.png", "cafe\u0301.png"]
    categories = ["dolci", "日本料理", "plain", "caffè"]
    for i, name in enumerate(names):
        save_image(photos / name, ["red", "blue", "checker", "gradient"][i], seed=i)
    with open(photos / "captions.csv", "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["file", "caption", "category"])
        for name, category in zip(names, categories):
            writer.writerow([name, f"{category} 🍮 piatto", category])
    run("index", photos, "--model", "blip-base", check=EXIT_OK)
    table = run("query", "--in", photos, "--model", "blip-base", "--text", "dessert",
                check=EXIT_OK, cwd=photos).stdout.splitlines()
    header, rows = table[0], table[1:]
    assert len(rows) == 4, table
    caption_column = columns(header[:header.index("CAPTION")])
    category_column = columns(header[:header.index("CATEGORY")])
    for row in rows:
        # Each row's category starts where the header's does, and so does its caption.
        after_path = row.index(".png") + len(".png")
        category = next(c for c in categories if c in row[after_path:])
        category_at = row.index(category, after_path)
        assert columns(row[:category_at]) == category_column, table
        caption_at = row.index(category, category_at + len(category))
        assert columns(row[:caption_at]) == caption_column, table


def test_long_non_ascii_cells_are_cut_on_a_character_with_an_ellipsis(run, tmp_path):
    photos = tmp_path / "photos"
    name = "日本" * 30 + ".png"  # 124 columns of path
    save_image(photos / name, "red", seed=1)
    (photos / "captions.csv").write_text(f"file,caption,category\n{name},x,{'è' * 20}\n")
    run("index", photos, "--model", "blip-base", check=EXIT_OK)
    header, row = run("query", "--in", photos, "--model", "blip-base", "--text", "x",
                      check=EXIT_OK, cwd=photos).stdout.splitlines()[:2]
    path_at = header.index("PATH")
    category_at = header.index("CATEGORY")
    # A path keeps its end (the file name); a category its start.
    path_cell = row[path_at:]
    assert path_cell.startswith("...") and "日本.png" in path_cell, row
    cut = row.index(".png") + len(".png")
    assert columns(row[:cut]) <= category_at, row
    assert "èèè..." in row, row
    assert columns(row[:row.index("èèè")]) == category_at, row


# ---------------------------------------------------------------------------------------------
# A folder indexed by two models.

def test_plain_query_on_a_folder_of_two_models(run, tmp_path):
    models = private_models(run, tmp_path, ("blip-base", "blip2-vitL"))
    photos = tmp_path / "photos"
    for i, kind in enumerate(["red", "blue", "checker"]):
        save_image(photos / f"{kind}.png", kind, seed=i)
    run("index", photos, "--model", "blip-base", check=EXIT_OK)
    run("index", photos, "--model", "blip2-vitL", check=EXIT_OK)

    # Equal counts: the choice is repeatable, and said, with the flag to change it.
    first = run.json("query", "--in", photos, "--text", "red", "--json")
    proc = run("query", "--in", photos, "--text", "red", "--json")
    assert json.loads(proc.stdout)["model"] == first["model"]
    assert "blip-base" in proc.stderr and "blip2-vitL" in proc.stderr
    assert "--model" in proc.stderr

    # The chosen model's bundle goes: the other one answers.
    shutil.rmtree(models / first["model"])
    other = run.json("query", "--in", photos, "--text", "red", "--json")
    assert other["model"] != first["model"] and len(other["results"]) == 3

    # Neither is installed: both are named, and --model.
    shutil.rmtree(models / other["model"])
    proc = run("query", "--in", photos, "--text", "red")
    assert proc.returncode == EXIT_INDEX, proc.stderr
    assert "blip-base" in proc.stderr and "blip2-vitL" in proc.stderr, proc.stderr
    assert "--model" in proc.stderr


# ---------------------------------------------------------------------------------------------
# Report edge cases.

def test_eval_on_one_image_reports_precision_as_not_measured(run, tmp_path):
    photos = tmp_path / "photos"
    save_image(photos / "red" / "only.png", "red", seed=1)
    (photos / "captions.csv").write_text("file,caption\nred/only.png,a red square\n")
    report = run.json("eval", photos, "--model", "blip-base", "--json")[0]
    assert report["image_to_image_category_p5"] == {"precision": None, "queries": 0}
    assert report["text_to_image"]["r1"] == 1.0  # one caption, one image: measured
    table = run("eval", photos, "--model", "blip-base", check=EXIT_OK).stdout
    assert table.splitlines()[1].rstrip().endswith("n/a"), table



def test_simmatrix_all_without_captions_draws_what_it_can_and_explicit_kinds_refuse(run,
                                                                                   tmp_path):
    photos = tmp_path / "photos"
    make_scene(photos, captions=False)
    run("index", photos, "--model", "blip-base", check=EXIT_OK)
    out = tmp_path / "all" / "m"
    proc = run("simmatrix", "--in", photos, "--model", "blip-base", "--kind", "all", "--out", out,
               "--json")
    assert proc.returncode == EXIT_OK, proc.stderr
    report = json.loads(proc.stdout)
    assert [m["kind"] for m in report["matrices"]] == ["image-image"]
    assert set(report["skipped"]) == {"image-text", "image-multimodal", "multimodal-multimodal",
                                      "text-text"}
    assert "no captions" in proc.stderr
    assert sorted(p.name for p in out.parent.iterdir()) == ["m-image-image.csv",
                                                             "m-image-image.png"]

    # Asked for by name, a kind that cannot be drawn refuses the run before anything is written.
    out = tmp_path / "named" / "m"
    proc = run("simmatrix", "--in", photos, "--model", "blip-base", "--kind", "image-image",
               "--kind", "text-text", "--out", out)
    assert proc.returncode == EXIT_INDEX, proc.stderr
    assert "no captions" in proc.stderr and "text-text" in proc.stderr
    assert not out.parent.exists()


def test_rebuild_that_fails_every_unchanged_file_keeps_their_vectors(run, tmp_path):
    photos = tmp_path / "photos"
    for i, kind in enumerate(["red", "blue", "checker", "gradient"]):
        save_image(photos / f"{kind}.png", kind, seed=i)
    run("index", photos, "--model", "blip-base", check=EXIT_OK)
    s = summary(run, photos, "--model", "blip-base", "--rebuild", "--max-pixels", "10",
                expect=6)
    assert s["failed"] == 4 and s["removed"] == 0
    assert all("unchanged" in f["reason"] and "kept" in f["reason"] for f in s["failures"])
    assert len(indexed_paths(run, photos)) == 4

    # A file whose content did change and fails has its stale vectors removed, as before.
    save_image(photos / "red.png", "red", seed=99, size=64)
    s = summary(run, photos, "--model", "blip-base", "--max-pixels", "10", expect=6)
    assert s["failed"] == 1
    assert {Path(p).name for p in indexed_paths(run, photos)} == {"blue.png", "checker.png",
                                                                  "gradient.png"}


# ---------------------------------------------------------------------------------------------
# Library chatter.

def tiff_without_photometric(source: Path, target: Path) -> Path:
    """sample.tiff with its PhotometricInterpretation tag renamed to an unknown one: OpenCV's
    TIFF reader then refuses it, and logs that to stderr unless told not to."""
    import struct
    data = bytearray(source.read_bytes())
    order = "<" if data[:2] == b"II" else ">"
    ifd = struct.unpack(order + "I", data[4:8])[0]
    (entries,) = struct.unpack(order + "H", data[ifd:ifd + 2])
    for e in range(entries):
        at = ifd + 2 + 12 * e
        if struct.unpack(order + "H", data[at:at + 2])[0] == 262:
            data[at:at + 2] = struct.pack(order + "H", 65000)
            break
    else:
        raise AssertionError("no PhotometricInterpretation tag")
    target.write_bytes(bytes(data))
    return target


def test_refused_images_are_reported_once_without_library_chatter(run, tmp_path, shared):
    photos = tmp_path / "photos"
    photos.mkdir()
    tiff_without_photometric(shared / "data" / "edge" / "sample.tiff", photos / "broken.tiff")
    save_image(photos / "fine.png", "red", seed=1)
    proc = run("index", photos, "--model", "blip-base")
    assert proc.returncode == 6, proc.stderr  # partial: one file failed
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert any("broken.tiff" in line and "cannot decode" in line for line in lines), lines
    chatter = [line for line in lines
               if not line.startswith(("warning:", "failed:", "indexing", "info:"))
               and "with blip-base:" not in line]
    assert chatter == [], chatter
    assert not any("OpenCV" in line or "imdecode" in line or "TIFF" in line for line in lines)


def test_an_unknown_default_model_from_the_environment_says_where_the_name_came_from(run,
                                                                                    tmp_path):
    photos = tmp_path / "photos"
    save_image(photos / "red.png", "red", seed=0)
    env = {"MMSEARCH_DEFAULT_MODEL": "no-such-model"}
    proc = run("index", photos, env=env)
    assert proc.returncode == EXIT_MODEL, proc.stderr
    assert "no-such-model" in proc.stderr, proc.stderr
    assert "MMSEARCH_DEFAULT_MODEL" in proc.stderr and "--model" in proc.stderr, proc.stderr
    # --model wins over the variable.
    run("index", photos, "--model", "blip-base", env=env, check=EXIT_OK)
    # A plain query of an indexed folder answers with the model that indexed it.
    proc = run("query", "--in", photos, "--text", "red", "--json", env=env, check=EXIT_OK)
    assert json.loads(proc.stdout)["model"].startswith("blip-base"), proc.stdout


def test_a_relative_mmsearch_home_is_taken_from_the_current_folder(run, tmp_path):
    photos = tmp_path / "photos"
    save_image(photos / "red.png", "red", seed=0)
    work = tmp_path / "work"
    work.mkdir()
    env = {"MMSEARCH_HOME": "relative-home", "HOME": str(tmp_path / "user")}
    run("index", photos, "--model", "blip-base", env=env, cwd=work, check=EXIT_OK)
    assert (work / "relative-home" / "index.sqlite3").is_file()
    assert not (tmp_path / "user" / ".local").exists()  # not replaced by ~/.local/share
    proc = run("query", "--in", photos, "--text", "red", "--json", env=env, cwd=work,
               check=EXIT_OK)
    assert [Path(r["path"]).name for r in json.loads(proc.stdout)["results"]] == ["red.png"]
