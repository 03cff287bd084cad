"""LAVIS's three position-embedding interpolations vs shared/golden/pos_embed_interp, and the
loader's use of them (a checkpoint at another grid gets interpolated)."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from mmsearch_models.pos_embed import (interpolate_clip_pos_embed, interpolate_eva_pos_embed,
                                       interpolate_vit_pos_embed)
from mmsearch_models.weights import protocol_tensor


def _np(golden_dir, name):
    return np.load(golden_dir / "pos_embed_interp" / f"{name}.npy")


def test_inputs_are_protocol_values(golden_dir):
    for name, key, shape in (("blip_vitb16_224", "visual_encoder.pos_embed", (1, 197, 768)),
                             ("eva_vitg14_224", "visual_encoder.pos_embed", (1, 257, 1408)),
                             ("clip_vitl14_224", "visual_encoder.positional_embedding", (257, 1024))):
        np.testing.assert_array_equal(protocol_tensor(key, shape).numpy(), _np(golden_dir, name))


@pytest.mark.parametrize("src,dst,fn,arg", [
    ("blip_vitb16_224", "blip_vitb16_224_to_384", interpolate_vit_pos_embed, 24 * 24),
    ("eva_vitg14_224", "eva_vitg14_224_to_364", interpolate_eva_pos_embed, 26 * 26),
    ("clip_vitl14_224", "clip_vitl14_224_to_364", interpolate_clip_pos_embed, 26),
])
def test_interpolation_matches_lavis(golden_dir, src, dst, fn, arg):
    got = fn(torch.from_numpy(_np(golden_dir, src)), arg).numpy()
    ref = _np(golden_dir, dst)
    assert got.shape == ref.shape
    diff = float(np.abs(got - ref).max())
    print(f"[pos_embed] {dst}: max|diff| = {diff:.3e}")
    assert diff <= 1e-6


def test_same_grid_is_identity():
    x = torch.randn(1, 197, 8)
    assert interpolate_vit_pos_embed(x, 196) is x
    y = torch.randn(257, 8)
    assert interpolate_clip_pos_embed(y, 16) is y


@pytest.mark.parametrize("name,size", [("blip-base", 384), ("blip2-vitL", 364), ("blip2-pretrain", 364)])
def test_loader_interpolates_tiny(tmp_path, name, size):
    """Checkpoint files at the default grid load into a model built at another image size."""
    from mmsearch_models import build_model, load_checkpoint_files, write_deterministic_checkpoints
    paths = write_deterministic_checkpoints(name, tmp_path, tiny=True)
    m = build_model(name, image_size=size, tiny=True)
    load_checkpoint_files(m, name, paths, image_size=size, tiny=True)
    vis = m.visual_encoder
    pe = vis.positional_embedding if hasattr(vis, "positional_embedding") else vis.pos_embed
    assert pe.shape[-2] == (size // vis.patch_size) ** 2 + 1
    with torch.no_grad():
        v, ie, ip = m.encode_image(torch.randn(1, 3, size, size))
    assert torch.isfinite(ip).all()
