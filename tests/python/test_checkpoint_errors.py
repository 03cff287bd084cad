"""A truncated file, a non-checkpoint file, a missing key, an unexpected key, a shape mismatch:
each raises CheckpointError naming the file and the keys. Tiny models, so this is fast."""
from __future__ import annotations

import pytest
import torch

from mmsearch_models import CheckpointError, build_model, load_checkpoint_files, write_deterministic_checkpoints


@pytest.fixture(scope="module")
def tiny_files(tmp_path_factory):
    d = tmp_path_factory.mktemp("tiny_ckpt")
    return {n: write_deterministic_checkpoints(n, d / n, tiny=True) for n in ("blip-base", "blip2-vitL", "blip-coco")}


def _load(name, paths):
    m = build_model(name, tiny=True)
    load_checkpoint_files(m, name, paths, tiny=True)
    return m


def _rewrite(src, dst, edit, role="model"):
    obj = torch.load(src)
    sd = obj["model"] if role == "model" else obj
    edit(sd)
    torch.save(obj, dst)
    return dst


def test_valid_files_load(tiny_files):
    for name, paths in tiny_files.items():
        _load(name, paths)


def test_truncated_file(tiny_files, tmp_path):
    src = tiny_files["blip-base"]["model_base_capfilt_large.pth"]
    bad = tmp_path / "model_base_capfilt_large.pth"
    data = src.read_bytes()
    bad.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="model_base_capfilt_large.pth.*(truncated|corrupt)"):
        _load("blip-base", {"model_base_capfilt_large.pth": bad})


def test_empty_file(tmp_path):
    bad = tmp_path / "model_base_capfilt_large.pth"
    bad.write_bytes(b"")
    with pytest.raises(CheckpointError, match="model_base_capfilt_large.pth"):
        _load("blip-base", {"model_base_capfilt_large.pth": bad})


def test_not_a_checkpoint(tmp_path):
    bad = tmp_path / "model_base_capfilt_large.pth"
    bad.write_text("<html><body>403 Forbidden</body></html>\n")
    with pytest.raises(CheckpointError, match="model_base_capfilt_large.pth"):
        _load("blip-base", {"model_base_capfilt_large.pth": bad})


def test_wrong_structure(tmp_path):
    bad = tmp_path / "model_base_capfilt_large.pth"
    torch.save({"state_dict": {"a": torch.zeros(1)}}, bad)
    with pytest.raises(CheckpointError, match="model_base_capfilt_large.pth.*'model'"):
        _load("blip-base", {"model_base_capfilt_large.pth": bad})


def test_missing_key(tiny_files, tmp_path):
    key = "text_encoder.encoder.layer.1.output.dense.weight"
    bad = _rewrite(tiny_files["blip-base"]["model_base_capfilt_large.pth"], tmp_path / "model_base_capfilt_large.pth",
                   lambda sd: sd.pop(key))
    with pytest.raises(CheckpointError, match=r"model_base_capfilt_large\.pth.*missing keys.*" + key.replace(".", r"\.")):
        _load("blip-base", {"model_base_capfilt_large.pth": bad})


def test_missing_vit_key_blip2(tiny_files, tmp_path):
    paths = dict(tiny_files["blip2-vitL"])
    paths["clip_vit_L.pth"] = _rewrite(paths["clip_vit_L.pth"], tmp_path / "clip_vit_L.pth",
                                       lambda sd: sd.pop("ln_pre.weight"), role="vit")
    with pytest.raises(CheckpointError, match=r"missing keys.*visual_encoder\.ln_pre\.weight"):
        _load("blip2-vitL", paths)


def test_unexpected_key(tiny_files, tmp_path):
    bad = _rewrite(tiny_files["blip-base"]["model_base_capfilt_large.pth"], tmp_path / "model_base_capfilt_large.pth",
                   lambda sd: sd.__setitem__("text_encoder.pooler.dense.weight", torch.zeros(2, 2)))
    with pytest.raises(CheckpointError, match=r"model_base_capfilt_large\.pth.*unexpected keys.*text_encoder\.pooler\.dense\.weight"):
        _load("blip-base", {"model_base_capfilt_large.pth": bad})


def test_unexpected_vit_key(tiny_files, tmp_path):
    paths = dict(tiny_files["blip2-vitL"])
    paths["clip_vit_L.pth"] = _rewrite(paths["clip_vit_L.pth"], tmp_path / "clip_vit_L.pth",
                                       lambda sd: sd.__setitem__("rel_pos_bias.table", torch.zeros(3)), role="vit")
    with pytest.raises(CheckpointError, match=r"clip_vit_L\.pth.*unexpected keys.*rel_pos_bias\.table"):
        _load("blip2-vitL", paths)


def test_shape_mismatch(tiny_files, tmp_path):
    key = "vision_proj.weight"
    bad = _rewrite(tiny_files["blip-base"]["model_base_capfilt_large.pth"], tmp_path / "model_base_capfilt_large.pth",
                   lambda sd: sd.__setitem__(key, torch.zeros(3, 3)))
    with pytest.raises(CheckpointError, match=r"model_base_capfilt_large\.pth.*shape mismatch.*vision_proj\.weight"):
        _load("blip-base", {"model_base_capfilt_large.pth": bad})


def test_documented_filtering(tiny_files, tmp_path):
    """Momentum encoders / queues (blip-coco file has them), BLIP's text_decoder, an ITM head the
    model does not keep, the dropped last ViT block and position_ids are accepted."""
    load_ok = _load("blip-coco", tiny_files["blip-coco"])
    assert not any(k.split(".")[0].endswith("_m") for k in load_ok.state_dict())

    def extras(sd):
        sd["text_decoder.bert.embeddings.word_embeddings.weight"] = torch.zeros(2, 2)
        sd["itm_head.weight"] = torch.zeros(2, 32)
        sd["itm_head.bias"] = torch.zeros(2)
        sd.pop("text_encoder.embeddings.position_ids")
    p = _rewrite(tiny_files["blip-base"]["model_base_capfilt_large.pth"], tmp_path / "model_base_capfilt_large.pth", extras)
    _load("blip-base", {"model_base_capfilt_large.pth": p})

    paths = dict(tiny_files["blip2-vitL"])

    def vit_extras(sd):
        for k in [k for k in sd if k.startswith("transformer.resblocks.0.")]:
            sd[k.replace("resblocks.0.", "resblocks.2.")] = sd[k].clone()   # tiny depth 2: block 2 = "last" block
        sd["ln_post.weight"] = torch.ones(40)
        sd["proj"] = torch.zeros(40, 8)
    paths["clip_vit_L.pth"] = _rewrite(paths["clip_vit_L.pth"], tmp_path / "clip_vit_L.pth", vit_extras, role="vit")
    _load("blip2-vitL", paths)


def test_missing_path_entry():
    with pytest.raises(CheckpointError, match="eva_vit_g.pth"):
        load_checkpoint_files(build_model("blip2-pretrain", tiny=True), "blip2-pretrain", {}, tiny=True)
