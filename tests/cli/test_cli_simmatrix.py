"""`mmsearch simmatrix` with category folders in several scripts (issue 9): the heatmap draws
each category's name, so two folders that differ only in those names give different pictures
(with ASCII-only fonts both were drawn as "????" and came out byte-identical).

At scale (issue 10): above --max-items per side a matrix is refused or, with --sample, a
seeded sample stratified by category is scored; --csv streams the CSV without a picture. The
tests use a tiny --max-items on a 9-image folder to stay fast."""
import csv
import subprocess
from collections import Counter
from pathlib import Path

import numpy as np
from PIL import Image

from test_cli_search import EXIT_USAGE, make_scene, read_matrix, save_image, summary

KINDS = ["red", "checker", "gradient"]


def make_folder(root: Path, categories, per_category: int = 3) -> Path:
    for c, (category, kind) in enumerate(zip(categories, KINDS)):
        for i in range(per_category):
            save_image(root / category / f"{kind}_{i}.png", kind, seed=100 * c + i)
    return root


def heatmap(run, folder: Path, out: Path):
    summary(run, folder, "--model", "blip-base")
    proc = run("simmatrix", "--in", folder, "--model", "blip-base", "--kind", "image-image",
               "--out", out, check=0)
    assert proc.stderr.count("no glyph") == 0, proc.stderr
    labels, cols, m = read_matrix(Path(f"{out}-image-image.csv"))
    png = Path(f"{out}-image-image.png")
    with Image.open(png) as im:
        assert im.format == "PNG" and im.width >= 300 and im.height >= 300
        pixels = np.asarray(im.convert("RGB"))
    return labels, m, pixels


def test_heatmaps_of_folders_differing_only_in_category_names_differ(run, tmp_path):
    first = ["デザート", "Пельмени", "tiramisù"]
    second = ["甜点", "Пельмени", "tiramisù"]
    labels_a, m_a, png_a = heatmap(run, make_folder(tmp_path / "a", first), tmp_path / "out" / "a")
    labels_b, m_b, png_b = heatmap(run, make_folder(tmp_path / "b", second), tmp_path / "out" / "b")

    # The CSV keeps the category folders, in UTF-8, grouped by category.
    assert {Path(l).parts[0] for l in labels_a} == set(first)
    assert {Path(l).parts[0] for l in labels_b} == set(second)
    assert [Path(l).name for l in labels_a] == [Path(l).name for l in labels_b]
    assert np.allclose(m_a, m_b, atol=1e-5)  # same pictures, same scores

    # Same layout, different names drawn.
    assert png_a.shape == png_b.shape
    differ = np.any(png_a != png_b, axis=-1)
    assert differ.any()
    # The difference is text (the one category header, twice), not the cells.
    assert differ.mean() < 0.01, differ.mean()


def test_no_font_is_an_error_that_says_what_to_install(run, tmp_path):
    folder = make_folder(tmp_path / "photos", ["デザート", "Пельмени", "tiramisù"], per_category=1)
    summary(run, folder, "--model", "blip-base")
    config = tmp_path / "no-fonts.conf"
    config.write_text('<?xml version="1.0"?>\n<fontconfig><cachedir>'
                      f'{tmp_path / "fc-cache"}</cachedir></fontconfig>\n')
    proc = run("simmatrix", "--in", folder, "--model", "blip-base", "--out", tmp_path / "m",
               env={"FONTCONFIG_FILE": str(config)})
    assert proc.returncode == 3, proc.stderr  # an input is missing: the font
    assert "apt-get install fonts-noto-cjk" in proc.stderr and "MMSEARCH_FONT" in proc.stderr
    assert not (tmp_path / "m-image-image.png").exists()
    # A font given by path works without fontconfig finding any.
    noto = subprocess.run(["fc-match", "-f", "%{file}", "Noto Sans CJK SC"], check=True,
                          capture_output=True, text=True).stdout
    run("simmatrix", "--in", folder, "--model", "blip-base", "--out", tmp_path / "m",
        env={"FONTCONFIG_FILE": str(config), "MMSEARCH_FONT": noto}, check=0)
    assert (tmp_path / "m-image-image.png").exists()


# ---------------------------------------------------------------------------------------------
# At scale: --max-items, --sample, --csv, --json.


def indexed_scene(run, tmp_path) -> Path:
    d = tmp_path / "photos"
    make_scene(d, per_category=3)  # 9 images in 3 categories, 12 captions
    summary(run, d, "--model", "blip-base")
    return d


def csv_rows(path: Path):
    with open(path, newline="") as f:
        return list(csv.reader(f))


def test_above_max_items_is_refused_naming_count_limit_and_flags(run, tmp_path):
    d = indexed_scene(run, tmp_path)
    out = tmp_path / "out" / "m"
    proc = run("simmatrix", "--in", d, "--model", "blip-base", "--max-items", "5", "--out", out)
    assert proc.returncode == EXIT_USAGE, proc.stderr
    for part in ("9 x 9", "--max-items 5", "--sample N", "--seed S"):
        assert part in proc.stderr, (part, proc.stderr)
    assert not Path(f"{out}-image-image.csv").exists()
    assert not Path(f"{out}-image-image.png").exists()
    # --csv lifts the picture limit, not --max-items: still refused.
    proc = run("simmatrix", "--in", d, "--model", "blip-base", "--max-items", "5", "--csv",
               "--out", out)
    assert proc.returncode == EXIT_USAGE and "--max-items 5" in proc.stderr, proc.stderr
    # Combinations refused before anything is loaded: a sample above the limit, and a sample
    # too large to draw without --csv.
    proc = run("simmatrix", "--in", d, "--model", "blip-base", "--max-items", "5",
               "--sample", "6", "--out", out)
    assert proc.returncode == EXIT_USAGE and "--sample 6" in proc.stderr, proc.stderr
    proc = run("simmatrix", "--in", d, "--model", "blip-base", "--max-items", "5000",
               "--sample", "2500", "--out", out)
    assert proc.returncode == EXIT_USAGE and "--csv" in proc.stderr and "2000" in proc.stderr
    proc = run("simmatrix", "--in", d, "--model", "blip-base", "--sample", "0", "--out", out)
    assert proc.returncode == EXIT_USAGE, proc.stderr


def sampled_labels(run, d, out, seed, *extra):
    proc = run("simmatrix", "--in", d, "--model", "blip-base", "--max-items", "5",
               "--sample", "5", "--seed", seed, "--out", out, *extra, check=0)
    rows = csv_rows(Path(f"{out}-image-image.csv"))
    return proc, rows


def test_sample_is_seeded_stratified_and_says_so(run, tmp_path):
    d = indexed_scene(run, tmp_path)
    out = tmp_path / "out" / "s"
    proc, rows = sampled_labels(run, d, out, 1)
    note = "sample of 5 of 9 images x 5 of 9 images, stratified by category, seed 1"
    assert rows[0][0] == f"label ({note})"
    assert note in proc.stdout and note in proc.stderr  # the output line and the log
    labels = [r[0] for r in rows[1:]]
    assert len(labels) == 5 and rows[0][1:] == labels
    # 3 x 3 images: quotas 5/3 each -> 1 + 1 + 1, the two leftover seats to the first two
    # categories by name (checker, gradient), none twice.
    cats = [Path(l).parts[0] for l in labels]
    assert Counter(cats) == {"checker": 2, "gradient": 2, "red": 1}, cats
    assert cats == sorted(cats)  # grouped
    assert len(set(labels)) == 5
    with Image.open(f"{out}-image-image.png") as im:
        assert im.format == "PNG"
    # The sample's scores are the whole matrix's for those items.
    run("simmatrix", "--in", d, "--model", "blip-base", "--out", tmp_path / "all", check=0)
    labels_all, _, m_all = read_matrix(Path(f"{tmp_path / 'all'}-image-image.csv"))
    m = np.array([[float(x) for x in r[1:]] for r in rows[1:]])
    idx = [labels_all.index(l) for l in labels]
    assert np.array_equal(m, m_all[np.ix_(idx, idx)])

    # Deterministic: the same seed again gives the same file; other seeds other samples.
    _, again = sampled_labels(run, d, tmp_path / "out" / "again", 1)
    assert again == rows
    others = {tuple(r[0] for r in sampled_labels(run, d, tmp_path / "out" / f"o{s}", s)[1][1:])
              for s in (2, 3, 4)}
    assert others - {tuple(labels)}, others


def test_csv_only_streams_the_same_csv_without_a_picture(run, tmp_path):
    d = indexed_scene(run, tmp_path)
    pictured = tmp_path / "out" / "p"
    streamed = tmp_path / "out" / "c"
    run("simmatrix", "--in", d, "--model", "blip-base", "--kind", "image-text", "--out",
        pictured, check=0)
    proc = run("simmatrix", "--in", d, "--model", "blip-base", "--kind", "image-text", "--csv",
               "--out", streamed, check=0)
    assert Path(f"{streamed}-image-text.csv").read_bytes() == \
        Path(f"{pictured}-image-text.csv").read_bytes()
    assert not Path(f"{streamed}-image-text.png").exists()
    assert ".png" not in proc.stdout and "9x12" in proc.stdout
    # A sample streams too, and equals the pictured sample's CSV.
    for out, extra in ((pictured, []), (streamed, ["--csv"])):
        run("simmatrix", "--in", d, "--model", "blip-base", "--kind", "image-text", "--sample",
            "4", "--seed", "9", "--out", f"{out}-s", *extra, check=0)
    assert Path(f"{streamed}-s-image-text.csv").read_bytes() == \
        Path(f"{pictured}-s-image-text.csv").read_bytes()


def test_json_summary_says_what_was_done(run, tmp_path):
    d = indexed_scene(run, tmp_path)
    out = tmp_path / "out" / "j"
    summary_ = run.json("simmatrix", "--in", d, "--model", "blip-base", "--kind", "image-image",
                        "--kind", "text-text", "--sample", "5", "--seed", "3", "--max-items", "100",
                        "--json", "--out", out)
    assert summary_["model"] == "blip-base" and summary_["model_id"].startswith("blip-base@")
    assert summary_["scope"] == str(d) and summary_["max_items"] == 100
    assert summary_["sample"] == 5 and summary_["seed"] == 3
    image, text = summary_["matrices"]
    assert image["kind"] == "image-image" and text["kind"] == "text-text"
    assert (image["rows"], image["cols"], image["scope_rows"], image["scope_cols"]) == (5, 5, 9, 9)
    assert (text["rows"], text["scope_rows"]) == (5, 12)
    assert image["sampled"] and "5 of 9 images" in image["note"]
    assert image["streamed"] is False and image["png"] == f"{out}-image-image.png"
    assert Path(image["csv"]).exists() and Path(image["png"]).exists()
    # Whole and streamed: no sample, no picture.
    summary_ = run.json("simmatrix", "--in", d, "--model", "blip-base", "--csv", "--json",
                        "--out", out)
    (m,) = summary_["matrices"]
    assert summary_["sample"] is None and m["sampled"] is False and m["note"] == ""
    assert m["streamed"] is True and m["png"] is None and (m["rows"], m["cols"]) == (9, 9)
