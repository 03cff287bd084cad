"""A folder's model is matched by its full identity: after a bundle is re-exported, a query says
so and suggests a command that works, and `index --prune` removes the old vectors (issue 9)."""
import json
import shutil

from PIL import Image

from conftest import Runner

EXIT_MODEL, EXIT_INDEX = 4, 5


def make_folder(root):
    root.mkdir()
    for i, colour in enumerate([(220, 30, 30), (30, 220, 30), (30, 30, 220)]):
        Image.new("RGB", (32, 32), colour).save(root / f"{i}.png")
    return root


def re_export(bundle):
    """Same name, other manifest bytes: what a re-export with other weights looks like."""
    manifest = json.loads((bundle / "mmsearch.json").read_text())
    manifest["description"] = manifest.get("description", "") + " (re-exported)"
    (bundle / "mmsearch.json").write_text(json.dumps(manifest, indent=2))


def test_re_exported_bundle_is_reported_and_pruned(mmsearch_bin, tiny_models, tmp_path):
    models = tmp_path / "models"
    shutil.copytree(tiny_models / "blip-base", models / "blip-base")
    shutil.copytree(tiny_models / "blip2-vitL", models / "blip2-vitL")
    run = Runner(mmsearch_bin, tmp_path / "home", models)
    photos = make_folder(tmp_path / "photos")
    old_id = run.json("index", photos, "--model", "blip-base", "--json")["model"]
    run("index", photos, "--model", "blip2-vitL", check=0)

    re_export(models / "blip-base")
    proc = run("query", "--in", photos, "--text", "red", "--model", "blip-base")
    assert proc.returncode == EXIT_INDEX, proc.stderr
    assert old_id in proc.stderr and "earlier export" in proc.stderr, proc.stderr
    assert f"mmsearch index {photos} --model blip-base" in proc.stderr, proc.stderr
    assert proc.stdout == ""
    # Without --model the folder's other model answers, and the re-export is still reported.
    proc = run("query", "--in", photos, "--text", "red", "--json")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["model"] == "blip2-vitL"
    assert old_id in proc.stderr and "earlier export" in proc.stderr, proc.stderr
    assert f"mmsearch index {photos} --model blip-base" in proc.stderr, proc.stderr

    # The suggested command works, and then the query does.
    new_id = run.json("index", photos, "--model", "blip-base", "--json")["model"]
    assert new_id != old_id and new_id.startswith("blip-base@")
    result = run.json("query", "--in", photos, "--text", "red", "--model", "blip-base", "--json")
    assert result["model_id"] == new_id and len(result["results"]) == 3

    # --prune drops exactly the old export's vectors and keeps both installed models.
    report = run.json("index", "--prune", "--json")
    assert [p["model"] for p in report["pruned"]] == [old_id]
    assert report["pruned"][0]["files"] == 3
    assert run.json("index", "--prune", "--json")["pruned"] == []
    assert run.json("query", "--in", photos, "--text", "x", "--model", "blip2-vitL",
                    "--json")["results"]


def test_prune_removes_models_that_are_not_on_the_search_path(mmsearch_bin, tiny_models,
                                                             tmp_path):
    run = Runner(mmsearch_bin, tmp_path / "home", tiny_models)
    photos = make_folder(tmp_path / "photos")
    old_id = run.json("index", photos, "--model", "blip-base", "--json")["model"]
    # Only the source tree's default model is installed now.
    (tmp_path / "no-models").mkdir()
    other = Runner(mmsearch_bin, tmp_path / "home", tmp_path / "no-models")
    proc = other("index", "--prune", check=0)
    assert f"pruned {old_id}: 3 files" in proc.stdout
    assert other("index").returncode == 2  # neither a folder nor --prune


def test_uninstalled_model_is_named(mmsearch_bin, tiny_models, tmp_path):
    models = tmp_path / "models"
    shutil.copytree(tiny_models / "blip-base", models / "blip-base")
    run = Runner(mmsearch_bin, tmp_path / "home", models)
    photos = make_folder(tmp_path / "photos")
    run("index", photos, "--model", "blip-base", check=0)
    shutil.rmtree(models / "blip-base")
    proc = run("query", "--in", photos, "--text", "red")
    assert proc.returncode == EXIT_INDEX, proc.stderr
    assert "no bundle named blip-base is installed" in proc.stderr, proc.stderr
