"""Checkpoint reading and strict, documented key matching.

Loading semantics (LAVIS's, made strict):

* ``role == "model"`` files hold ``{"model": state_dict}`` with prefixed keys.
* ``role == "vit"`` files (BLIP-2 ``eva_vit_g.pth`` / ``clip_vit_L.pth``) hold a plain state dict of
  the vision tower with **un-prefixed** keys; they are loaded into ``visual_encoder`` first.
* A ``pos_embed`` / ``positional_embedding`` whose grid differs from the model's is interpolated
  the way LAVIS does (pos_embed.py).
* Documented filtering (keys dropped on purpose, never silently anything else):
  - every file: ``position_ids`` buffers are optional (taken if present, deterministic otherwise);
  - model files: momentum encoders (``visual_encoder_m.*``, ``text_encoder_m.*``, ``vision_proj_m.*``,
    ``text_proj_m.*``, any top-level ``*_m.*``), queues (``image_queue``, ``text_queue``,
    ``idx_queue``, ``queue_ptr``), BLIP's captioning decoder ``text_decoder.*`` (present in the BLIP
    pre-training checkpoint, not part of the feature extractor) and, for models built without an
    ITM head (blip-base, as LAVIS ``blip_feature_extractor``), ``itm_head.*``;
  - ViT files: blocks beyond the model's depth (EVA-CLIP-g's 40th block, CLIP's 24th - LAVIS drops
    the last block) and heads LAVIS does not build (``norm.*``, ``fc_norm.*``, ``head.*``,
    ``ln_post.*``, ``proj``).
* Anything else missing, unexpected or of the wrong shape raises ``CheckpointError`` naming the
  file and the keys. After all files: every model tensor must have been loaded from some file.
"""
from __future__ import annotations

import pickle
import re
import zipfile
from pathlib import Path
from typing import Dict, Iterable, List, Mapping, Optional, Set, Tuple

import torch
from torch import nn

from .pos_embed import interpolate_clip_pos_embed, interpolate_vit_pos_embed


class CheckpointError(Exception):
    """A checkpoint file could not be used: names the file and the reason."""


def _fmt_keys(keys: Iterable[str], limit: int = 20) -> str:
    keys = sorted(keys)
    s = ", ".join(keys[:limit])
    if len(keys) > limit:
        s += f", ... ({len(keys)} in all)"
    return s


def read_checkpoint(path) -> object:
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"{path}: file not found")
    if path.stat().st_size == 0:
        raise CheckpointError(f"{path}: empty file (truncated download?)")
    try:
        return torch.load(str(path), map_location="cpu")
    except (RuntimeError, EOFError, pickle.UnpicklingError, zipfile.BadZipFile, ValueError, OSError,
            AttributeError, ImportError, IndexError, KeyError, TypeError, UnicodeDecodeError) as e:
        kind = "truncated or corrupt" if path.suffix in (".pth", ".pt", ".bin") else "not a PyTorch checkpoint"
        raise CheckpointError(f"{path}: {kind} checkpoint, torch.load failed: {type(e).__name__}: {e}") from None


def state_dict_from(obj, role: str, path) -> Dict[str, torch.Tensor]:
    if role == "model":
        if not isinstance(obj, Mapping) or "model" not in obj:
            raise CheckpointError(f"{path}: not a LAVIS model checkpoint (expected a dict with a 'model' entry, "
                                  f"got {type(obj).__name__}{' with keys ' + _fmt_keys(map(str, obj.keys()), 8) if isinstance(obj, Mapping) else ''})")
        sd = obj["model"]
    elif role == "vit":
        sd = obj
        if isinstance(sd, Mapping) and "model" in sd and isinstance(sd["model"], Mapping) and len(sd) <= 4:
            sd = sd["model"]
    else:
        raise ValueError(role)
    if not isinstance(sd, Mapping) or not all(isinstance(k, str) and torch.is_tensor(v) for k, v in sd.items()):
        raise CheckpointError(f"{path}: not a state dict of named tensors")
    return dict(sd)


_MOMENTUM_RE = re.compile(r"^[A-Za-z0-9]+(_[A-Za-z0-9]+)*_m\.")
_QUEUES = {"image_queue", "text_queue", "idx_queue", "queue_ptr"}
_VIT_HEADS_RE = re.compile(r"^(norm|fc_norm|head|ln_post)\.|^proj$")
_BLOCK_RE = re.compile(r"^(blocks|transformer\.resblocks)\.(\d+)\.")


def is_optional_key(key: str) -> bool:
    return key.endswith("position_ids")


def filter_model_file(sd: Dict[str, torch.Tensor], has_itm: bool) -> Tuple[Dict[str, torch.Tensor], List[str]]:
    kept, dropped = {}, []
    for k, v in sd.items():
        if (_MOMENTUM_RE.match(k) or k in _QUEUES or k.startswith("text_decoder.")
                or (not has_itm and k.startswith("itm_head."))):
            dropped.append(k)
        else:
            kept[k] = v
    return kept, dropped


def filter_vit_file(sd: Dict[str, torch.Tensor], depth: int) -> Tuple[Dict[str, torch.Tensor], List[str]]:
    kept, dropped = {}, []
    for k, v in sd.items():
        m = _BLOCK_RE.match(k)
        if (m and int(m.group(2)) >= depth) or _VIT_HEADS_RE.match(k):
            dropped.append(k)
        else:
            kept[k] = v
    return kept, dropped


def adapt_pos_embed(key: str, value: torch.Tensor, target: torch.Tensor, vision: nn.Module) -> torch.Tensor:
    """Interpolate a position embedding whose grid differs (LAVIS behaviour); else unchanged."""
    if value.shape == target.shape:
        return value
    if key.endswith("positional_embedding") and value.dim() == 2:
        # clip_vit.interpolate_pos_embed works in the stored dtype (computed in fp32 here, rounded back)
        g = int(round((target.shape[0] - 1) ** 0.5))
        return interpolate_clip_pos_embed(value.float(), g).to(value.dtype)
    if key.endswith("pos_embed") and value.dim() == 3:
        # vit / eva_vit.interpolate_pos_embed: result is float32 (EVA calls .float() first)
        return interpolate_vit_pos_embed(value.float(), target.shape[1] - 1)
    return value


def apply_state_dict(module: nn.Module, sd: Mapping[str, torch.Tensor], path, prefix: str = "",
                     vision: Optional[nn.Module] = None) -> Set[str]:
    """Copy ``sd`` (keys relative to ``module``) into ``module``; unexpected keys and shape
    mismatches raise CheckpointError. Returns the set of (prefixed) keys loaded."""
    own = module.state_dict(keep_vars=True)
    unexpected = [k for k in sd if k not in own]
    if unexpected:
        raise CheckpointError(f"{path}: unexpected keys (not in the model): {_fmt_keys(prefix + k for k in unexpected)}")
    bad = []
    values = {}
    for k, v in sd.items():
        tgt = own[k]
        if v.shape != tgt.shape and vision is not None:
            v = adapt_pos_embed(k, v, tgt, vision)
        if v.shape != tgt.shape:
            bad.append(f"{prefix}{k}: checkpoint {tuple(v.shape)} vs model {tuple(tgt.shape)}")
        values[k] = v
    if bad:
        raise CheckpointError(f"{path}: shape mismatch: " + "; ".join(bad[:20]))
    with torch.no_grad():
        for k, v in values.items():
            own[k].copy_(v.to(own[k].dtype))
    return {prefix + k for k in values}


def check_complete(model: nn.Module, loaded: Set[str], files: List[str]) -> None:
    missing = [k for k in model.state_dict() if k not in loaded and not is_optional_key(k)]
    if missing:
        raise CheckpointError(f"{', '.join(files)}: missing keys (in no checkpoint file): {_fmt_keys(missing)}")
