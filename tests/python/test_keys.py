"""Key layout (names + shapes) of every model equals the golden keys.txt after the documented
filtering; tiny models build and run. Cheap: models are built without weight initialisation."""
from __future__ import annotations

import pytest
import torch

from mmsearch_models import MODELS, build_model, tiny_config
from mmsearch_models.checkpoint import filter_model_file
from mmsearch_models.weights import read_keys_txt


@pytest.mark.parametrize("name", list(MODELS))
def test_key_layout_matches_golden(name, golden_dir):
    spec = MODELS[name]
    ref = read_keys_txt(golden_dir / spec.golden_dir / "keys.txt")
    m = build_model(name)
    got = {k: tuple(v.shape) for k, v in m.state_dict().items()}
    kept, dropped = filter_model_file({k: torch.empty(0) for k in ref}, m.has_itm)
    expected = {k: ref[k]["shape"] for k in kept}
    missing = sorted(set(expected) - set(got))
    unexpected = sorted(set(got) - set(expected))
    assert not missing and not unexpected, f"missing {missing[:10]} unexpected {unexpected[:10]}"
    wrong = [(k, got[k], expected[k]) for k in expected if got[k] != expected[k]]
    assert not wrong, wrong[:10]
    # only momentum encoders and queues are filtered from the golden layouts
    assert all(k.split(".")[0].endswith("_m") or k in ("image_queue", "text_queue", "idx_queue", "queue_ptr")
               for k in dropped), dropped[:10]
    # dtypes: everything fp32 except int buffers
    for k, v in m.state_dict().items():
        want = torch.int64 if ref[k]["final_dtype"] == "int64" else torch.float32
        assert v.dtype == want, k


@pytest.mark.parametrize("name", list(MODELS))
def test_spec_and_attributes(name):
    spec = MODELS[name]
    m = build_model(name)
    assert not m.training
    assert m.family == spec.family and m.image_size == spec.image_size
    assert m.embed_dim == 256 and m.hidden == 768
    patch = 16 if spec.family == "blip" else 14
    assert m.vision_tokens == (spec.image_size // patch) ** 2 + 1
    if spec.family == "blip":
        assert m.image_tokens == m.vision_tokens and m.vision_width == 768 and m.num_query_tokens == 0
        assert m.enc_token_id == 30523 and spec.max_txt_len == 35
    else:
        assert m.image_tokens == 32 and m.num_query_tokens == 32 and m.enc_token_id == -1
        assert m.vision_width == (1408 if spec.vision_encoder == "eva-vit-g14" else 1024)
        assert spec.max_txt_len == 32
    assert m.has_itm == (name != "blip-base")
    assert [c.role for c in spec.checkpoints] == (["model"] if spec.family == "blip" else ["vit", "model"])


@pytest.mark.parametrize("name", list(MODELS))
def test_tiny_models_build_and_run(name, tmp_path):
    from mmsearch_models import load_checkpoint_files, write_deterministic_checkpoints
    spec = MODELS[name]
    cfg = tiny_config(name)
    assert cfg
    paths = write_deterministic_checkpoints(name, tmp_path, tiny=True)
    assert set(paths) == {c.filename for c in spec.checkpoints}
    total = sum(p.stat().st_size for p in paths.values())
    # official file structure
    for cf in spec.checkpoints:
        obj = torch.load(paths[cf.filename])
        if cf.role == "vit":
            assert "model" not in obj and not any(k.startswith("visual_encoder.") for k in obj)
            assert any(k in obj for k in ("pos_embed", "positional_embedding"))
        else:
            sd = obj["model"]
            has_vit = any(k.startswith("visual_encoder.") for k in sd)
            assert has_vit == (not spec.freeze_vit), cf.filename
            if name == "blip-coco":
                assert {"image_queue", "text_queue", "idx_queue", "queue_ptr"} <= set(sd)
                assert any(k.startswith("visual_encoder_m.") for k in sd) and any(k.startswith("text_encoder_m.") for k in sd)
    m = build_model(name, tiny=True)
    load_checkpoint_files(m, name, paths, tiny=True)
    nbytes = sum(v.numel() * v.element_size() for v in m.state_dict().values())
    assert nbytes < 10_000_000, nbytes
    S = m.image_size
    ids = torch.tensor([[101, 1037, 3899, 102, 0], [101, 2088, 102, 0, 0]])
    mask = (ids != 0).long()
    with torch.no_grad():
        vt, ie, ip = m.encode_image(torch.randn(2, 3, S, S))
        te, tp = m.encode_text(ids, mask)
        mm, itm = m.encode_multimodal(vt, ids, mask)
    assert vt.shape == (2, m.vision_tokens, m.vision_width)
    assert ie.shape == (2, m.image_tokens, m.hidden) and ip.shape == (2, m.image_tokens, m.embed_dim)
    assert te.shape == (2, 5, m.hidden) and tp.shape == (2, 5, m.embed_dim)
    assert torch.allclose(ip.norm(dim=-1), torch.ones(2, m.image_tokens), atol=1e-5)
    assert mm.shape[0] == 2 and itm.shape == (2, 2 if m.has_itm else 0)
    assert total < 60_000_000


@pytest.mark.parametrize("name", ["blip-base", "blip2-vitL", "blip2-pretrain"])
def test_tiny_scriptable(name, tmp_path):
    """encode_* paths compile with torch.jit.script and give the eager outputs."""
    from mmsearch_models import deterministic_model
    m = deterministic_model(name, tmp_path, tiny=True)
    sm = torch.jit.script(m)
    S = m.image_size
    px = torch.randn(1, 3, S, S)
    ids = torch.tensor([[101, 1037, 3899, 102, 0]])
    mask = (ids != 0).long()
    with torch.no_grad():
        for a, b in zip(m.encode_image(px), sm.encode_image(px)):
            assert torch.allclose(a, b, atol=1e-6)
        for a, b in zip(m.encode_text(ids, mask), sm.encode_text(ids, mask)):
            assert torch.allclose(a, b, atol=1e-6)
        vt = m.encode_image(px)[0]
        for a, b in zip(m.encode_multimodal(vt, ids, mask), sm.encode_multimodal(vt, ids, mask)):
            assert torch.allclose(a, b, atol=1e-6)
