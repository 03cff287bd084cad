"""`mmsearch simmatrix` with category folders in several scripts (issue 9): the heatmap draws
each category's name, so two folders that differ only in those names give different pictures
(with ASCII-only fonts both were drawn as "????" and came out byte-identical)."""
import subprocess
from pathlib import Path

import numpy as np
from PIL import Image

from test_cli_search import read_matrix, save_image, summary

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
