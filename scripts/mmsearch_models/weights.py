"""Golden deterministic weight protocol (see shared/golden/README.md, "Weights protocol").

Every tensor is a pure function of its state_dict key (its *seed key*) and its shape, so
the same values can be generated for the official checkpoint layout and for any other
layout that uses the same key names (e.g. the un-prefixed BLIP-2 ViT files, tiny models).
"""
from __future__ import annotations

import re
import zlib
from typing import Dict, Mapping, Optional, Tuple

import torch
from torch import nn

_LN_RE = re.compile(
    r"(^|\.)(LayerNorm|norm|norm1|norm2|ln_1|ln_2|ln_pre|ln_post|ln_vision|ln_final|fc_norm)\.weight$"
)

# Tied tensors: key -> seed key (the lexicographically smallest key of the tie group).
TIED_SEED_KEYS: Dict[str, str] = {
    "Qformer.cls.predictions.decoder.weight": "Qformer.bert.embeddings.word_embeddings.weight",
    "Qformer.cls.predictions.decoder.bias": "Qformer.cls.predictions.bias",
}


def init_kind(key: str, dtype: torch.dtype) -> str:
    if not dtype.is_floating_point:
        return "keep"
    if key == "temp" or key.endswith(".temp"):
        return "temp"
    if key.endswith("bias"):
        return "bias"
    if _LN_RE.search(key):
        return "ln"
    return "normal"


def seed_key_for(key: str) -> str:
    return TIED_SEED_KEYS.get(key, key)


def _keep_value(key: str, shape: Tuple[int, ...], dtype: torch.dtype) -> torch.Tensor:
    if key.endswith("position_ids"):
        n = shape[-1]
        return torch.arange(n, dtype=dtype).reshape(shape)
    if key.endswith("idx_queue"):
        return torch.full(shape, -100, dtype=dtype)
    if key.endswith("queue_ptr"):
        return torch.zeros(shape, dtype=dtype)
    raise ValueError(f"no protocol value for non-float tensor {key!r}")


def protocol_tensor(key: str, shape, dtype: torch.dtype = torch.float32,
                    seed_key: Optional[str] = None) -> torch.Tensor:
    """The protocol value of one tensor (float32 for float kinds)."""
    shape = tuple(int(s) for s in shape)
    kind = init_kind(key, dtype)
    if kind == "keep":
        return _keep_value(key, shape, dtype)
    if kind == "temp":
        return torch.full(shape, 0.07, dtype=torch.float32)
    sk = seed_key if seed_key is not None else seed_key_for(key)
    gen = torch.Generator()
    gen.manual_seed(zlib.crc32(sk.encode("utf-8")))
    r = torch.randn(shape, dtype=torch.float32, generator=gen)
    if kind == "ln":
        return 1 + r * 0.02
    return r * 0.02


def protocol_state_dict(layout: Mapping[str, Tuple[Tuple[int, ...], torch.dtype]],
                        prefix: str = "") -> Dict[str, torch.Tensor]:
    """Protocol values for {key: (shape, dtype)}; ``prefix`` is prepended to every key to
    form the seed key (used for the un-prefixed ViT files)."""
    out: Dict[str, torch.Tensor] = {}
    for key in sorted(layout):
        shape, dtype = layout[key]
        full = prefix + key
        out[key] = protocol_tensor(full, shape, dtype, seed_key_for(full))
    return out


def layout_of(sd: Mapping[str, torch.Tensor]) -> Dict[str, Tuple[Tuple[int, ...], torch.dtype]]:
    return {k: (tuple(v.shape), v.dtype) for k, v in sd.items()}


def round_to_fp16_(module: nn.Module) -> int:
    """LAVIS ``convert_weights_to_fp16`` followed by ``model.float()`` on CPU: the weight and
    bias of every nn.Linear / nn.Conv2d (incl. subclasses such as MultiheadAttention's
    out_proj) are rounded to float16 (round to nearest even) and kept as float32.
    MultiheadAttention in_proj_*, LayerNorm, embeddings, EVA q_bias/v_bias are untouched.
    Returns the number of tensors rounded."""
    n = 0
    with torch.no_grad():
        for m in module.modules():
            if isinstance(m, (nn.Linear, nn.Conv1d, nn.Conv2d)):
                for p in (m.weight, m.bias):
                    if p is not None:
                        p.copy_(p.detach().half().float())
                        n += 1
    return n


def read_keys_txt(path) -> Dict[str, dict]:
    """Parse a golden keys.txt into {key: {shape, final_dtype, lavis_dtype, kind, seed_key, sum, first4}}."""
    out = {}
    with open(path, encoding="utf-8") as f:
        for line in f:
            if line.startswith("#") or not line.strip():
                continue
            parts = line.rstrip("\n").split("\t")
            key, shape, fdt, ldt, kind, seed, s, first = parts[:8]
            shp = () if shape == "scalar" else tuple(int(x) for x in shape.split("x"))
            out[key] = dict(shape=shp, final_dtype=fdt, lavis_dtype=ldt, kind=kind, seed_key=seed,
                            sum=float(s), first4=[float(x) for x in first.split(",")] if first else [])
    return out


_DTYPES = {"float32": torch.float32, "float16": torch.float16, "int64": torch.int64}


def dtype_from_name(name: str) -> torch.dtype:
    return _DTYPES[name]


# --------------------------------------------------------------------------- fast construction

import contextlib  # noqa: E402

_SKIP_INIT_PATCHED = (
    (nn.Linear, "reset_parameters"),
    (nn.modules.conv._ConvNd, "reset_parameters"),
    (nn.LayerNorm, "reset_parameters"),
    (nn.Embedding, "reset_parameters"),
    (nn.MultiheadAttention, "_reset_parameters"),
)


@contextlib.contextmanager
def skip_init():
    """Construct modules without their random initialisation (storage stays torch.empty).

    Checkpoint or protocol weights always overwrite every tensor afterwards; for the
    1 B-parameter EVA ViT-g this makes construction near-instant and keeps untouched pages
    out of RSS. Not thread-safe (patches class methods for the duration)."""
    saved = [(cls, name, cls.__dict__[name]) for cls, name in _SKIP_INIT_PATCHED]
    try:
        for cls, name, _ in saved:
            setattr(cls, name, lambda self: None)
        yield
    finally:
        for cls, name, fn in saved:
            setattr(cls, name, fn)
