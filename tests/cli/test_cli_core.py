"""`mmsearch models`, `tokenize`, `embed` and error handling, on tiny bundles."""
import json
import shutil

import numpy as np
import pytest

from conftest import TINY_NAMES, Runner

EXIT_USAGE, EXIT_INPUT, EXIT_MODEL = 2, 3, 4


def test_models_lists_every_tiny_bundle(run):
    rows = run.json("models", "--json")
    by_name = {row["name"]: row for row in rows}
    for name in TINY_NAMES:
        assert by_name[name]["valid"], by_name[name]
        assert by_name[name]["family"] == ("blip2" if name.startswith("blip2") else "blip")
        assert by_name[name]["size_bytes"] > 0
    table = run("models", check=0).stdout
    assert "blip2-vitL" in table and "NAME" in table


def test_broken_bundle_is_listed_invalid_not_a_crash(run, tiny_models, tmp_path):
    models = tmp_path / "models"
    shutil.copytree(tiny_models / "blip-base", models / "blip-base")
    shutil.copytree(tiny_models / "blip2-vitL", models / "blip2-vitL")
    with open(models / "blip-base" / "text.pt", "ab") as f:
        f.write(b"garbage")
    (models / "blip2-vitL" / "multimodal.pt").unlink()
    runner = Runner(run.binary, run.home, models)
    rows = {r["name"]: r for r in runner.json("models", "--json")}
    assert not rows["blip-base"]["valid"]
    assert "text.pt" in rows["blip-base"]["reason"]
    assert not rows["blip2-vitL"]["valid"]
    assert "multimodal.pt" in rows["blip2-vitL"]["reason"]
    # Using the corrupt bundle is refused with the model exit code and the file named.
    proc = runner("embed", "--model", "blip-base", "--text", "a pizza")
    assert proc.returncode == EXIT_MODEL
    assert "text.pt" in proc.stderr and proc.stdout == ""


def test_tokenize_strips_accents_like_bert(run):
    lines = run("tokenize", "--model", "blip-base", "Lasagne al ragù!", "RAGU", check=0)
    first, second = [json.loads(l) for l in lines.stdout.splitlines()]
    assert first["normalised"] == "lasagne al ragù"
    assert first["ids"][0] == 101 and first["ids"][-1] == 102
    # "ragù" loses its accent and reads exactly like "RAGU": the same WordPieces and ids.
    assert first["tokens"][-2:] == second["tokens"] == ["rag", "##u"]
    assert first["ids"][-3:-1] == second["ids"][1:-1]


def test_tokenize_truncates_to_the_query_limit(run):
    text = " ".join(["pizza"] * 100)
    line = json.loads(run("tokenize", "--model", "blip2-vitL", text, check=0).stdout)
    assert len(line["ids"]) == 35 and line["ids"][-1] == 102
    line = json.loads(run("tokenize", "--model", "blip2-vitL", "--max-tokens", "0", text,
                          check=0).stdout)
    assert len(line["ids"]) == 52  # pre_caption keeps the first 50 words
    line = json.loads(run("tokenize", "--model", "blip2-vitL", "--max-tokens", "0", "--raw",
                          text, check=0).stdout)
    assert len(line["ids"]) == 102


@pytest.mark.parametrize("name", TINY_NAMES)
def test_embed_writes_lavis_named_arrays(run, shared, tmp_path, name):
    images = [shared / "golden/inputs/img0_500x375_gradient_shapes.png",
              shared / "golden/inputs/img1_333x640_noise.png"]
    texts = ["a margherita pizza", "Tiramisù: coffee-soaked ladyfingers; mascarpone cream."]
    out = tmp_path / "feats"
    args = ["embed", "--model", name, "--out", out]
    for image in images:
        args += ["--image", image]
    for text in texts:
        args += ["--text", text]
    run(*args, check=0)
    manifest = json.loads((run.models / name / "mmsearch.json").read_text())
    dims = manifest["dims"]
    image_proj = np.load(out / "image_embeds_proj.npy")
    assert image_proj.shape == (2, dims["image_tokens"], dims["embed"])
    np.testing.assert_allclose(np.linalg.norm(image_proj, axis=-1), 1.0, atol=1e-5)
    text_proj = np.load(out / "text_embeds_proj.npy")
    assert text_proj.shape[0] == 2 and text_proj.shape[2] == dims["embed"]
    mm = np.load(out / "multimodal_embeds.npy")
    assert mm.shape[0] == 4 and mm.shape[2] == dims["hidden"]
    if manifest["itm"]:
        assert np.load(out / "itm_logits.npy").shape == (4, 2)
    else:
        assert not (out / "itm_logits.npy").exists()
    # Row p = i*T + j: pairs with the same image but different texts differ.
    assert not np.allclose(mm[0], mm[1])


def test_embed_json_and_batching_consistency(run, shared):
    image = shared / "golden/inputs/img0_500x375_gradient_shapes.png"
    one = run.json("embed", "--model", "blip-base", "--image", image, "--mode", "image")
    two = run.json("embed", "--model", "blip-base", "--image", image, "--image", image,
                   "--mode", "image")
    a = np.array(one["image_embeds_proj"]["data"]).reshape(one["image_embeds_proj"]["shape"])
    b = np.array(two["image_embeds_proj"]["data"]).reshape(two["image_embeds_proj"]["shape"])
    np.testing.assert_allclose(a[0], b[1], atol=1e-5)


def test_unknown_model_is_a_model_error(run):
    proc = run("embed", "--model", "no-such-model", "--text", "x")
    assert proc.returncode == EXIT_MODEL
    assert "unknown model 'no-such-model'" in proc.stderr
    assert "blip-base" in proc.stderr  # says what is available
    assert proc.stdout == ""


def test_unreadable_image_is_an_input_error_naming_the_file(run, shared):
    bad = shared / "data/edge/not_an_image.jpg"
    proc = run("embed", "--model", "blip-base", "--image", bad)
    assert proc.returncode == EXIT_INPUT
    assert "not_an_image.jpg" in proc.stderr
    proc = run("embed", "--model", "blip-base", "--image", "/nonexistent/x.jpg")
    assert proc.returncode == EXIT_INPUT
    assert "/nonexistent/x.jpg" in proc.stderr


def test_bad_options_are_usage_errors(run):
    assert run("embed", "--model", "blip-base", "--mode", "sideways", "--text", "x").returncode \
        == EXIT_USAGE
    assert run("embed", "--model", "blip-base").returncode == EXIT_USAGE
    assert run("--threads", "-3", "models").returncode == EXIT_USAGE
    assert run("frobnicate").returncode == EXIT_USAGE
    assert run().returncode == EXIT_USAGE


@pytest.mark.parametrize("command", ["models", "tokenize", "embed"])
def test_every_subcommand_has_help_with_examples(run, command):
    proc = run(command, "--help", check=0)
    assert "Examples:" in proc.stdout


def test_bf16_inference_is_close_to_fp32(run, shared):
    image = shared / "golden/inputs/img0_500x375_gradient_shapes.png"
    fp32 = run.json("embed", "--model", "blip2-vitL", "--image", image, "--mode", "image")
    bf16 = run.json("--dtype", "bf16", "embed", "--model", "blip2-vitL", "--image", image,
                    "--mode", "image")
    a = np.array(fp32["image_embeds_proj"]["data"])
    b = np.array(bf16["image_embeds_proj"]["data"])
    assert np.all(np.isfinite(b))
    assert np.dot(a, b) / (np.linalg.norm(a) * np.linalg.norm(b)) > 0.98


def _cpu_has_native_bf16() -> bool:
    with open("/proc/cpuinfo", encoding="utf-8") as f:
        flags = next((line for line in f if line.startswith("flags")), "").split()
    return "avx512_bf16" in flags or "amx_bf16" in flags


def test_dtype_defaults_to_auto_and_reports_what_ran(run, shared, tmp_path):
    photos = tmp_path / "photos"
    photos.mkdir()
    for name in ("pizza_sliced.jpg", "tiramisu.jpg"):
        shutil.copy(shared / "data/photos" / name, photos / name)
    (photos / "captions.csv").write_text("file,caption\npizza_sliced.jpg,a pizza\n", encoding="utf-8")
    auto = "bf16" if _cpu_has_native_bf16() else "fp32"
    # No --dtype and no $MMSEARCH_DTYPE: auto.
    summary = run.json("index", photos, "--model", "blip-base", "--json", env={"MMSEARCH_DTYPE": ""})
    assert summary["dtype"] == auto
    timing = summary["timing"]
    assert timing["embedded_items"] == 2 and timing["batches"] == 1
    assert timing["first_batch_items"] == 2
    forward = (timing["image_forward_seconds"] + timing["text_forward_seconds"]
               + timing["multimodal_forward_seconds"])
    assert 0 < forward <= timing["embed_seconds"] <= summary["seconds"]
    assert timing["load_seconds"] > 0
    # --dtype wins over $MMSEARCH_DTYPE; auto may be asked for by name.
    summary = run.json("index", photos, "--model", "blip-base", "--json", "--rebuild", "--dtype", "fp32",
                       env={"MMSEARCH_DTYPE": "bf16"})
    assert summary["dtype"] == "fp32"
    summary = run.json("index", photos, "--model", "blip-base", "--json", "--rebuild",
                       env={"MMSEARCH_DTYPE": "auto"})
    assert summary["dtype"] == auto
    # Unchanged files run no model: no load, no batches.
    summary = run.json("index", photos, "--model", "blip-base", "--json")
    assert summary["timing"]["batches"] == 0 and summary["timing"]["load_seconds"] == 0


def test_bad_dtype_in_the_environment_is_a_usage_error_naming_it(run):
    proc = run("models", check=2, env={"MMSEARCH_DTYPE": "fp16"})
    assert "MMSEARCH_DTYPE is 'fp16'" in proc.stderr and "--dtype" in proc.stderr
    proc = run("--dtype", "fp16", "models", check=2)
    assert "--dtype" in proc.stderr
