"""Model bundle export (scripts/export_models.py, mmsearch_models/bundle.py): TorchScript
round trip against the eager model, manifest fields and hashes, clean failures that never
leave a partial bundle, the --checkpoint-dir offline path and the download path through a
local 127.0.0.1 server serving checkpoints in the official layout."""
from __future__ import annotations

import hashlib
import importlib.util
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from mmsearch_models import bundle, weight_file, zoo

from test_download import Server

REPO = Path(__file__).resolve().parents[2]
SHARED = REPO.parent / "shared"
VOCAB = SHARED / "data" / "bert-base-uncased-vocab.txt"
EXPORT = REPO / "scripts" / "export_models.py"
ALL = list(zoo.MODELS)

_spec = importlib.util.spec_from_file_location("export_models", EXPORT)
export_models = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(export_models)


BERT = bundle.Vocab(bundle.bert_vocab(VOCAB), "blip")


def run_export(*args) -> int:
    return export_models.main(["export", *map(str, args), "--vocab", str(VOCAB), "--retries", "1"])


def sha(p: Path) -> str:
    return hashlib.sha256(Path(p).read_bytes()).hexdigest()


def leftovers(out: Path):
    return sorted(p.name for p in out.iterdir() if p.name.startswith("."))


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """Tiny deterministic checkpoints of all five models in the official file layout
    (un-prefixed BLIP-2 ViT files included), served from 127.0.0.1."""
    root = tmp_path_factory.mktemp("served")
    for name in ALL:
        zoo.write_deterministic_checkpoints(name, root / name, tiny=True)
    return root


@pytest.fixture(scope="module")
def tiny_bundles(served, tmp_path_factory):
    """All five tiny bundles, exported through the download path and the normal loader."""
    out = tmp_path_factory.mktemp("bundles")
    cache = tmp_path_factory.mktemp("cache")
    for name in ALL:
        with Server(served / name) as srv:
            assert run_export(name, "--tiny", "--base-url", srv.url, "--out", out,
                              "--cache-dir", cache) == 0
    return out


def eager_tiny(name, tmp_path):
    return zoo.deterministic_model(name, tmp_path / ("w-" + name), tiny=True)


@pytest.mark.parametrize("name", ALL)
def test_tiny_round_trip(name, tiny_bundles, tmp_path):
    b = bundle.load_bundle(tiny_bundles / name)
    model = eager_tiny(name, tmp_path)
    px = bundle.sample_pixels(model, 2, seed=7)
    ids, mask = BERT.sample(3, 11, seed=7)
    with torch.no_grad():
        ref_img = model.encode_image(px)
        ref_txt = model.encode_text(ids, mask)
        img = b["image"](px)
        txt = b["text"](ids, mask)
        vt = img[0][:1].expand(3, -1, -1)
        mm_ids = ids.clone()
        if model.family == "blip":
            mm_ids[:, 0] = model.enc_token_id
        ref_mm = model.encode_multimodal(vt, mm_ids, mask)
        mm = b["multimodal"](vt, ids, mask)  # the module sets [ENC] itself
    for ref, got in ((ref_img, img), (ref_txt, txt), (ref_mm, mm)):
        assert len(ref) == len(got)
        for r, g in zip(ref, got):
            assert g.dtype == torch.float32
            assert r.shape == g.shape
            assert torch.allclose(r, g, atol=1e-5, rtol=0), (r - g).abs().max()
    man = b["manifest"]
    assert img[0].shape == (2, man["dims"]["vision_tokens"], man["dims"]["vision_width"])
    assert img[1].shape == (2, man["dims"]["image_tokens"], man["dims"]["hidden"])
    assert img[2].shape == (2, man["dims"]["image_tokens"], man["dims"]["embed"])
    assert torch.allclose(img[2].norm(dim=-1), torch.ones(()), atol=1e-5)
    assert torch.allclose(txt[1].norm(dim=-1), torch.ones(()), atol=1e-5)
    assert mm[1].shape == ((3, 2) if man["itm"] else (3, 0))


@pytest.mark.parametrize("name", ALL)
def test_manifest(name, tiny_bundles, served):
    d = tiny_bundles / name
    man = json.loads((d / "mmsearch.json").read_text())
    spec = zoo.MODELS[name]
    assert man["format"] == "mmsearch-bundle" and man["format_version"] == 2
    assert man["weights"] == "weights.bin"
    assert man["name"] == name and man["family"] == spec.family
    assert man["vision_encoder"] == "tiny-" + spec.vision_encoder
    assert man["image"] == {"size": spec.image_size, "mean": bundle.MEAN, "std": bundle.STD,
                            "resize": "pil-bicubic-squash"}
    t = man["text"]
    blip2 = spec.family == "blip2"
    assert t["vocab"] == "vocab.txt" and t["max_words"] == 50 and t["max_tokens"] == 35
    assert t["itm_max_tokens"] == (32 if blip2 else 35)
    assert t["normalise"] == "lavis-pre-caption" and t["lowercase"] is True
    assert (t["cls_token_id"], t["sep_token_id"], t["pad_token_id"], t["unk_token_id"]) == (101, 102, 0, 100)
    assert t["enc_token_id"] == (None if blip2 else 30523)
    assert t["special_tokens"]["[DEC]"] == 30522 and ("[ENC]" in t["special_tokens"]) != blip2
    assert man["dims"]["query_tokens"] == (32 if blip2 else 0)
    assert man["similarity"] == ({"text_image": "max-over-queries", "image_image": "mean-of-queries"}
                                 if blip2 else {"text_image": "cls", "image_image": "cls"})
    assert man["itm"] == spec.has_itm
    assert man["weights_dtype"] == "fp32"
    assert man["torch_version"] == torch.__version__
    assert man["source"]["kind"] == "checkpoint"
    ck = {c["file"]: c for c in man["source"]["checkpoints"]}
    assert set(ck) == {c.filename for c in spec.checkpoints}
    for f, c in ck.items():
        assert c["sha256"] == sha(served / name / f)
        assert c["url"].startswith("http://127.0.0.1:") and c["url"].endswith("/" + f)
    assert set(man["files"]) == {"image.pt", "text.pt", "multimodal.pt", "weights.bin", "vocab.txt"}
    for f, digest in man["files"].items():
        assert sha(d / f) == digest
    assert sorted(p.name for p in d.iterdir()) == sorted(list(man["files"]) + ["mmsearch.json"])
    assert (d / "vocab.txt").read_bytes() == VOCAB.read_bytes()
    assert sum(p.stat().st_size for p in d.iterdir()) < 10_000_000


@pytest.mark.parametrize("name", ["blip-base", "blip2-pretrain"])
def test_modules_hold_only_their_weights(name, tiny_bundles):
    b = bundle.load_bundle(tiny_bundles / name)

    def big(role):  # tensors with data (unused submodules are stored as empty stubs)
        return {k for k, v in b[role].state_dict().items() if v.numel() > 0}

    text_side = "text_encoder" if name.startswith("blip-") else "Qformer.bert.embeddings.word_embeddings"
    assert not any("visual_encoder" in k for k in big("text") | big("multimodal"))
    assert not any(text_side in k for k in big("image")) or name.startswith("blip2")
    if name == "blip-base":
        assert not any("text_encoder" in k for k in big("image"))
    else:  # the image path of BLIP-2 uses the Q-Former but not its word embeddings / LM head
        assert not any("word_embeddings" in k or ".cls." in k for k in big("image"))
        # text mode skips cross-attention
        assert not any("crossattention" in k for k in big("text"))


@pytest.mark.parametrize("name", ["blip-base", "blip2-vitL"])
def test_each_weight_is_stored_once_and_modules_hold_none(name, tiny_bundles):
    d = tiny_bundles / name
    weights = weight_file.WeightFile(d / "weights.bin")
    stored = sum(e["bytes"] for e in weights.tensors.values())
    used = {role: sum(weights.tensors[n]["bytes"] for n in names) for role, names in weights.modules.items()}
    assert set(used) == {"image", "text", "multimodal"}
    # The text and multimodal paths share BERT / the Q-Former: listed by several, stored once.
    assert sum(used.values()) > stored
    assert stored > 0.95 * (d / "weights.bin").stat().st_size
    for role in ("image", "text", "multimodal"):
        assert (d / f"{role}.pt").stat().st_size < 0.1 * stored
    # A text query never reads the vision encoder.
    assert not any(n.startswith(("visual_encoder.", "ln_vision.")) for n in weights.modules["text"])
    assert any(n.startswith("visual_encoder.") for n in weights.modules["image"])


def test_damaged_weight_file_is_refused_with_its_name(tiny_bundles, tmp_path):
    src = tiny_bundles / "blip-base" / "weights.bin"
    data = src.read_bytes()
    cases = {
        "magic": b"NOTTENS\0" + data[8:],
        "header length": data[:8] + (len(data)).to_bytes(8, "little") + data[16:],
        "short": data[:12],
    }
    for what, bad in cases.items():
        f = tmp_path / f"{what}.bin"
        f.write_bytes(bad)
        with pytest.raises(weight_file.WeightFileError, match=str(f)):
            weight_file.WeightFile(f)


def test_format_1_bundle_still_loads_and_runs():
    b = bundle.load_bundle(REPO / "models" / "dishes-tiny")
    assert b["manifest"]["format_version"] == 1 and "weights" not in b["manifest"]
    text = b["manifest"]["text"]  # its own trained vocabulary: ids from its manifest
    ids = torch.tensor([[text["cls_token_id"], 10, 11, text["sep_token_id"]]] * 2)
    t, p = b["text"](ids, torch.ones_like(ids))
    assert torch.isfinite(p).all() and p.shape[0] == 2


def test_load_bundle_detects_tampering_with_the_weights(tiny_bundles, tmp_path):
    d = tmp_path / "b"
    shutil.copytree(tiny_bundles / "blip-base", d)
    with open(d / "weights.bin", "r+b") as f:
        f.seek(-3, 2)
        f.write(b"xyz")
    with pytest.raises(bundle.ExportError, match="weights.bin"):
        bundle.load_bundle(d)


def test_load_bundle_detects_tampering(tiny_bundles, tmp_path):
    d = tmp_path / "b"
    shutil.copytree(tiny_bundles / "blip-base", d)
    with open(d / "text.pt", "ab") as f:
        f.write(b"x")
    with pytest.raises(bundle.ExportError, match="text.pt"):
        bundle.load_bundle(d)


@pytest.mark.parametrize("dtype", ["bf16", "fp16"])
def test_reduced_precision_bundle(dtype, tmp_path):
    out = tmp_path / "out"
    assert run_export("blip2-vitL", "--tiny", "--dtype", dtype, "--out", out) == 0
    b = bundle.load_bundle(out / "blip2-vitL")
    assert b["manifest"]["weights_dtype"] == dtype
    assert b["manifest"]["source"]["kind"] == "tiny"
    want = bundle.DTYPES[dtype]
    assert all(p.dtype == want for p in b["text"].parameters())
    ids, mask = BERT.sample(2, 6)
    if dtype == "bf16":
        t, p = b["text"](ids, mask)
        assert t.dtype == torch.float32 and p.dtype == torch.float32
    # The module converts as a whole (the C++ side may call module.to(...)).
    b["text"].float()
    t, p = b["text"](ids, mask)
    assert p.dtype == torch.float32 and torch.isfinite(p).all()


def test_tiny_generated_equals_downloaded(tiny_bundles, tmp_path):
    """--tiny without a source generates the same protocol weights: same outputs."""
    out = tmp_path / "out"
    assert run_export("blip-coco", "--tiny", "--out", out) == 0
    a = bundle.load_bundle(out / "blip-coco")
    b = bundle.load_bundle(tiny_bundles / "blip-coco")
    assert a["manifest"]["source"]["kind"] == "tiny"
    ids, mask = BERT.sample(2, 5)
    assert all(torch.equal(x, y) for x, y in zip(a["text"](ids, mask), b["text"](ids, mask)))


# ---------------------------------------------------------------------------------------------
# Offline path and failures: clear one-line error, documented exit code, no partial bundle.


def test_checkpoint_dir_offline(served, tmp_path):
    out = tmp_path / "out"
    assert run_export("blip2-pretrain", "--tiny", "--checkpoint-dir", served / "blip2-pretrain",
                      "--out", out, "--cache-dir", tmp_path / "nocache") == 0
    assert (out / "blip2-pretrain" / "mmsearch.json").is_file()
    assert not (tmp_path / "nocache").exists()


def test_missing_checkpoint_file(tmp_path, capsys):
    out = tmp_path / "out"
    (tmp_path / "ck").mkdir()
    assert run_export("blip-base", "--tiny", "--checkpoint-dir", tmp_path / "ck", "--out", out) == 3
    err = capsys.readouterr().err
    assert "model_base_capfilt_large.pth: not found" in err
    assert not (out / "blip-base").exists()


def test_truncated_checkpoint(served, tmp_path, capsys):
    ck = tmp_path / "ck"
    shutil.copytree(served / "blip2-vitL", ck)
    f = ck / "clip_vit_L.pth"
    data = f.read_bytes()
    f.write_bytes(data[: len(data) // 2])
    out = tmp_path / "out"
    assert run_export("blip2-vitL", "--tiny", "--checkpoint-dir", ck, "--out", out) == 4
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "clip_vit_L.pth" in err[0] and "truncated" in err[0]
    assert not out.exists() or leftovers(out) == [] and not (out / "blip2-vitL").exists()


def test_corrupt_checkpoint(served, tmp_path, capsys):
    ck = tmp_path / "ck"
    shutil.copytree(served / "blip-base", ck)
    (ck / "model_base_capfilt_large.pth").write_bytes(b"this is not a checkpoint")
    assert run_export("blip-base", "--tiny", "--checkpoint-dir", ck, "--out", tmp_path / "out") == 4
    assert "model_base_capfilt_large.pth" in capsys.readouterr().err


@pytest.mark.parametrize("change", ["missing", "unexpected"])
def test_key_mismatch_keeps_existing_bundle(served, tmp_path, capsys, change):
    out = tmp_path / "out"
    assert run_export("blip-base", "--tiny", "--out", out) == 0
    before = {p.name: sha(p) for p in (out / "blip-base").iterdir()}
    ck = tmp_path / "ck"
    ck.mkdir()
    obj = torch.load(served / "blip-base" / "model_base_capfilt_large.pth")
    if change == "missing":
        obj["model"].pop("vision_proj.weight")
        key = "vision_proj.weight"
    else:
        obj["model"]["unexpected.weight"] = torch.zeros(3)
        key = "unexpected.weight"
    torch.save(obj, ck / "model_base_capfilt_large.pth")
    capsys.readouterr()
    assert run_export("blip-base", "--tiny", "--checkpoint-dir", ck, "--out", out) == 5
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and key in err[0] and "model_base_capfilt_large.pth" in err[0], err
    assert {p.name: sha(p) for p in (out / "blip-base").iterdir()} == before
    assert leftovers(out) == []


def test_wrong_shape(served, tmp_path, capsys):
    """A full-size-layout file for a tiny model: the shapes do not fit."""
    ck = tmp_path / "ck"
    ck.mkdir()
    obj = torch.load(served / "blip-base" / "model_base_capfilt_large.pth")
    obj["model"]["vision_proj.weight"] = torch.zeros(7, 7)
    torch.save(obj, ck / "model_base_capfilt_large.pth")
    assert run_export("blip-base", "--tiny", "--checkpoint-dir", ck, "--out", tmp_path / "out") == 5
    assert "vision_proj.weight" in capsys.readouterr().err


@pytest.mark.parametrize("fault", ["404", "500"])
def test_server_error_exit_code(served, tmp_path, capsys, fault):
    out = tmp_path / "out"
    with Server(served / "blip2-pretrain") as srv:
        srv.faults["blip2_pretrained.pth"] = fault
        rc = run_export("blip2-pretrain", "--tiny", "--base-url", srv.url, "--out", out,
                        "--cache-dir", tmp_path / "cache")
    assert rc == 3
    err = capsys.readouterr().err
    assert f"blip2_pretrained.pth: HTTP {fault}" in err
    assert not (out / "blip2-pretrain").exists()


def test_resume_through_cli(served, tmp_path):
    out = tmp_path / "out"
    with Server(served / "blip2-coco") as srv:
        srv.faults["blip2_finetune_coco.pth"] = "cut"
        assert run_export("blip2-coco", "--tiny", "--base-url", srv.url, "--out", out,
                          "--cache-dir", tmp_path / "cache") == 0
        assert ("blip2_finetune_coco.pth", None) in srv.requests
        assert any(n == "blip2_finetune_coco.pth" and r for n, r in srv.requests)
    man = json.loads((out / "blip2-coco" / "mmsearch.json").read_text())
    ck = {c["file"]: c["sha256"] for c in man["source"]["checkpoints"]}
    assert ck["blip2_finetune_coco.pth"] == sha(served / "blip2-coco" / "blip2_finetune_coco.pth")


def test_replace_existing_bundle(tmp_path):
    out = tmp_path / "out"
    assert run_export("blip-base", "--tiny", "--out", out) == 0
    (out / "blip-base" / "stale-file").write_text("x")
    assert run_export("blip-base", "--tiny", "--out", out) == 0
    assert not (out / "blip-base" / "stale-file").exists()
    assert leftovers(out) == []


def test_export_failure_cleans_staging(tmp_path, monkeypatch):
    def boom(*a, **k):
        raise bundle.ExportError("round trip failed: injected")
    monkeypatch.setattr(bundle, "verify_modules", boom)
    out = tmp_path / "out"
    assert run_export("blip-base", "--tiny", "--out", out) == 6
    assert list(out.iterdir()) == []


def test_usage_errors(tmp_path, capsys):
    assert run_export("no-such-model", "--tiny", "--out", tmp_path) == 2
    assert run_export("blip-base", "--deterministic-weights", "--checkpoint-dir", tmp_path) == 2


def test_cli_help_and_list():
    r = subprocess.run([sys.executable, str(EXPORT), "export", "--help"], capture_output=True, text=True)
    assert r.returncode == 0 and "exit codes" in r.stdout and "key" in r.stdout
    r = subprocess.run([sys.executable, str(EXPORT), "list"], capture_output=True, text=True)
    assert r.returncode == 0
    for name, spec in zoo.MODELS.items():
        line = next(ln for ln in r.stdout.splitlines() if ln.startswith(name + " "))
        assert spec.vision_encoder in line and str(spec.image_size) in line
        assert all(c.filename in line for c in spec.checkpoints)


EXPORTABLE = ["blip-base", "blip-coco", "blip2-pretrain", "blip2-vitL", "blip2-coco", "opus-mt-it-en"]


@pytest.mark.parametrize("verbose", [[], ["-v"]])
def test_list_shows_every_exportable_bundle(verbose, capsys):
    """`list` names every bundle `export` accepts, the translator included, and nothing else."""
    assert export_models.main(["list", *verbose]) == 0
    out = capsys.readouterr().out
    table = out.split("\n\n")[0].splitlines()[1:]
    assert [ln.split()[0] for ln in table] == EXPORTABLE
    assert list(export_models.exportable()) == EXPORTABLE
    marian = next(ln for ln in table if ln.startswith("opus-mt-it-en "))
    assert "marian" in marian and "pytorch_model.bin" in marian
    if verbose:
        for name in EXPORTABLE:
            assert f"\n{name}: " in out
        assert "https://huggingface.co/Helsinki-NLP/opus-mt-it-en/resolve/main/source.spm" in out


def test_unknown_name_lists_the_exportable_ones(tmp_path, capsys):
    assert run_export("no-such-model", "--tiny", "--out", tmp_path) == 2
    assert f"known: {', '.join(EXPORTABLE)}" in capsys.readouterr().err


def test_vocab_must_fit_the_model(tmp_path):
    """write_bundle takes the vocabulary from the tokenizer and checks it against the model's
    word embeddings; the manifest's text section and sample ids come from it."""
    model = eager_tiny("blip2-pretrain", tmp_path)
    with pytest.raises(bundle.ExportError, match="30523 word embeddings"):
        bundle.write_bundle(model, tmp_path / "b", name="x", family="blip2", description="x",
                            vision_encoder="x", weights_dtype="fp32", vocab=BERT.tokens[:1000],
                            source={})
    assert not (tmp_path / "b").exists()
    small = bundle.Vocab(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "[unused0]", "a", "b"], "blip2")
    assert small.special == {"[PAD]": 0, "[UNK]": 1, "[CLS]": 2, "[SEP]": 3, "[MASK]": 4, "[DEC]": 8}
    ids, mask = small.sample(3, 6)
    assert set(ids[mask.bool()].tolist()) <= {2, 3, 6, 7} and set(ids[~mask.bool()].tolist()) <= {0}
    t = small.text_rules()
    assert (t["vocab_size"], t["cls_token_id"], t["enc_token_id"], t["itm_max_tokens"]) == (8, 2, None, 32)


# ---------------------------------------------------------------------------------------------
# Full size: blip-base with golden-protocol weights, checked against the LAVIS goldens.


def test_deterministic_blip_base_matches_goldens(tmp_path):
    golden = SHARED / "golden" / "blip_feature_extractor_base"
    if not golden.is_dir():
        pytest.skip("golden data missing")
    out = tmp_path / "out"
    assert run_export("blip-base", "--deterministic-weights", "--out", out,
                      "--cache-dir", tmp_path / "cache") == 0
    assert not any((tmp_path / "cache").iterdir())  # generated checkpoints are removed
    b = bundle.load_bundle(out / "blip-base")
    man = b["manifest"]
    assert man["source"]["kind"] == "deterministic" and man["vision_encoder"] == "vit-b16"
    assert man["dims"] == {"vision_tokens": 197, "vision_width": 768, "image_tokens": 197,
                           "hidden": 768, "embed": 256, "query_tokens": 0}
    g = {k: torch.from_numpy(np.load(golden / f"{k}.npy")) for k in (
        "pixel_values", "image_embeds", "image_embeds_proj", "input_ids_text", "attention_mask_text",
        "text_embeds", "text_embeds_proj", "attention_mask_multimodal", "multimodal_embeds")}
    with torch.no_grad():
        v, e, p = b["image"](g["pixel_values"])
        t, tp = b["text"](g["input_ids_text"], g["attention_mask_text"])
        n, T = v.shape[0], t.shape[0]
        vt = v.repeat_interleave(T, dim=0)  # pairs p = i*T + j
        ids = g["input_ids_text"].repeat(n, 1)
        m, itm = b["multimodal"](vt, ids, g["attention_mask_multimodal"])
    assert (e - g["image_embeds"]).abs().max() <= 1e-4
    assert (p - g["image_embeds_proj"]).abs().max() <= 1e-5
    assert (t - g["text_embeds"]).abs().max() <= 1e-4
    assert (tp - g["text_embeds_proj"]).abs().max() <= 1e-5
    assert (m - g["multimodal_embeds"]).abs().max() <= 1e-4
    assert itm.shape == (n * T, 0)
    # Each weight once (format 2): about the 894 MB checkpoint, where format 1 took 1.33 GB.
    assert sum(f.stat().st_size for f in (out / "blip-base").iterdir()) < 0.95e9


def test_image_size_override(tmp_path):
    out = tmp_path / "out"
    assert run_export("blip-base", "--tiny", "--image-size", "256", "--out", out) == 0
    b = bundle.load_bundle(out / "blip-base")
    assert b["manifest"]["image"]["size"] == 256
    assert b["manifest"]["dims"]["vision_tokens"] == 1 + (256 // 16) ** 2
    v, e, p = b["image"](torch.zeros(1, 3, 256, 256))
    assert v.shape == (1, 257, b["manifest"]["dims"]["vision_width"])
