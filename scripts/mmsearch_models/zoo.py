"""Model zoo: specs of the five supported models, construction, checkpoint loading and
deterministic (golden-protocol) checkpoint files in the official layout."""
from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Optional, Tuple

import torch
from torch import nn

from .blip import BlipFeatureExtractor, FeatureExtractor
from .blip2 import Blip2FeatureExtractor
from .checkpoint import (CheckpointError, apply_state_dict, check_complete, filter_model_file, filter_vit_file,
                         read_checkpoint, state_dict_from)
from .weights import protocol_tensor, round_to_fp16_, seed_key_for, skip_init

__all__ = ["CheckpointFile", "ModelSpec", "MODELS", "CheckpointError", "FeatureExtractor", "build_model",
           "load_checkpoint_files", "write_deterministic_checkpoints", "tiny_config", "model_config"]

_GCS = "https://storage.googleapis.com/sfr-vision-language-research"


@dataclass(frozen=True)
class CheckpointFile:
    filename: str
    url: str
    role: str                  # "model" ({"model": sd}) or "vit" (plain un-prefixed ViT state dict)
    approx_bytes: int
    sha256: Optional[str] = None


@dataclass(frozen=True)
class ModelSpec:
    name: str
    family: str
    vision_encoder: str
    image_size: int
    golden_dir: str
    description: str
    checkpoints: tuple
    lavis_name: str
    lavis_model_type: str
    max_txt_len: int
    vit_precision: str = "fp32"        # "fp16": LAVIS rounds ViT Linear/Conv weights to fp16
    has_itm: bool = True
    queue_size: int = 0                # BLIP retrieval checkpoints carry queues of this length
    freeze_vit: bool = False           # BLIP-2: frozen ViT -> its weights are not in the model file


_EVA = CheckpointFile("eva_vit_g.pth", f"{_GCS}/LAVIS/models/BLIP2/eva_vit_g.pth", "vit", 2_000_000_000)
_CLIP_L = CheckpointFile("clip_vit_L.pth", f"{_GCS}/LAVIS/models/BLIP2/clip_vit_L.pth", "vit", 610_000_000)

MODELS: Dict[str, ModelSpec] = {
    "blip-base": ModelSpec(
        "blip-base", "blip", "vit-b16", 224, "blip_feature_extractor_base",
        "BLIP ViT-B/16 feature extractor (LAVIS blip_feature_extractor/base, CapFilt-L pre-trained)",
        (CheckpointFile("model_base_capfilt_large.pth", f"{_GCS}/BLIP/models/model_base_capfilt_large.pth",
                        "model", 900_000_000),),
        "blip_feature_extractor", "base", 35, has_itm=False),
    "blip-coco": ModelSpec(
        "blip-coco", "blip", "vit-b16", 384, "blip_retrieval_coco",
        "BLIP ViT-B/16 image-text retrieval fine-tuned on COCO (LAVIS blip_retrieval/coco)",
        (CheckpointFile("blip_coco_retrieval.pth", f"{_GCS}/LAVIS/models/BLIP/blip_coco_retrieval.pth",
                        "model", 1_900_000_000),),
        "blip_retrieval", "coco", 35, queue_size=57600),
    "blip2-pretrain": ModelSpec(
        "blip2-pretrain", "blip2", "eva-vit-g14", 224, "blip2_feature_extractor_pretrain",
        "BLIP-2 Q-Former feature extractor, EVA ViT-g/14 (LAVIS blip2_feature_extractor/pretrain)",
        (_EVA, CheckpointFile("blip2_pretrained.pth", f"{_GCS}/LAVIS/models/BLIP2/blip2_pretrained.pth",
                              "model", 750_000_000)),
        "blip2_feature_extractor", "pretrain", 32, vit_precision="fp16", freeze_vit=True),
    "blip2-vitL": ModelSpec(
        "blip2-vitL", "blip2", "clip-vit-l14", 224, "blip2_feature_extractor_pretrain_vitL",
        "BLIP-2 Q-Former feature extractor, CLIP ViT-L/14 (LAVIS blip2_feature_extractor/pretrain_vitL)",
        (_CLIP_L, CheckpointFile("blip2_pretrained_vitL.pth", f"{_GCS}/LAVIS/models/BLIP2/blip2_pretrained_vitL.pth",
                                 "model", 750_000_000)),
        "blip2_feature_extractor", "pretrain_vitL", 32, vit_precision="fp16", freeze_vit=True),
    "blip2-coco": ModelSpec(
        "blip2-coco", "blip2", "eva-vit-g14", 364, "blip2_feature_extractor_coco",
        "BLIP-2 Q-Former feature extractor fine-tuned on COCO retrieval, EVA ViT-g/14 at 364 px "
        "(LAVIS blip2_feature_extractor/coco)",
        (_EVA, CheckpointFile("blip2_finetune_coco.pth", f"{_GCS}/LAVIS/models/BLIP2/blip2_finetune_coco.pth",
                              "model", 4_800_000_000)),
        "blip2_feature_extractor", "coco", 32, vit_precision="fp32"),
}

# Image size of the layout the separate ViT files are published in.
_VIT_FILE_IMAGE_SIZE = 224


def _spec(name: str) -> ModelSpec:
    try:
        return MODELS[name]
    except KeyError:
        raise KeyError(f"unknown model {name!r}; known: {', '.join(MODELS)}") from None


# Architectures as (full size, tiny). A tiny model has the same architecture, vocab, special
# tokens, query count, image and patch size with few narrow layers (bundles well under 10 MB).
_EMBED_DIM = (256, 16)
_TEXT = (dict(hidden=768, layers=12, heads=12, inter=3072), dict(hidden=32, layers=2, heads=2, inter=64))
_VISION = {
    "vit-b16": (dict(patch_size=16, embed_dim=768, depth=12, num_heads=12, mlp_hidden=3072),
                dict(patch_size=16, embed_dim=32, depth=2, num_heads=2, mlp_hidden=64)),
    "eva-vit-g14": (dict(patch_size=14, embed_dim=1408, depth=39, num_heads=16, mlp_hidden=6144),
                    dict(patch_size=14, embed_dim=48, depth=2, num_heads=2, mlp_hidden=96)),
    "clip-vit-l14": (dict(patch_size=14, width=1024, layers=23, heads=16, mlp_hidden=4096),
                     dict(patch_size=14, width=40, layers=2, heads=2, mlp_hidden=80)),
}


def model_config(name: str, tiny: bool = False) -> dict:
    spec = _spec(name)
    size = int(bool(tiny))
    vit = dict(_VISION[spec.vision_encoder][size])
    if spec.family == "blip":  # bert-base vocab + [DEC] + [ENC]
        return dict(embed_dim=_EMBED_DIM[size], vit=vit, bert=dict(vocab_size=30524, **_TEXT[size]))
    q = dict(vocab_size=30523, **_TEXT[size], cross_attention_freq=2)  # bert-base vocab + [DEC]
    return dict(embed_dim=_EMBED_DIM[size], num_query_token=32, vit=vit, qformer=q)


def tiny_config(name: str) -> dict:
    return model_config(name, tiny=True)


def build_model(name: str, image_size: Optional[int] = None, tiny: bool = False) -> FeatureExtractor:
    """Construct the model in eval mode, fp32, with UNINITIALISED weights (load a checkpoint or
    deterministic weights next). ``image_size`` defaults to the spec's size; must be a multiple of
    the patch size."""
    spec = _spec(name)
    size = int(image_size or spec.image_size)
    cfg = model_config(name, tiny)
    patch = cfg["vit"]["patch_size"]
    if size % patch:
        raise ValueError(f"{name}: image size {size} is not a multiple of the patch size {patch}")
    with skip_init():
        if spec.family == "blip":
            m = BlipFeatureExtractor(image_size=size, embed_dim=cfg["embed_dim"], vit=cfg["vit"], bert=cfg["bert"],
                                     has_itm=spec.has_itm)
        else:
            m = Blip2FeatureExtractor(vision_encoder=spec.vision_encoder, image_size=size,
                                      embed_dim=cfg["embed_dim"], num_query_token=cfg["num_query_token"],
                                      vit=cfg["vit"], qformer=cfg["qformer"])
    m.model_name = name
    m.tiny = bool(tiny)
    return m.eval().requires_grad_(False)


def load_checkpoint_files(model: FeatureExtractor, name: str, paths: dict, image_size: Optional[int] = None,
                          tiny: bool = False) -> None:
    """Load the spec's checkpoint files (``paths``: {filename: path}) into ``model`` with LAVIS's
    semantics, strictly (see checkpoint.py for the documented filtering). Raises CheckpointError."""
    spec = _spec(name)
    for cf in spec.checkpoints:
        if cf.filename not in paths:
            raise CheckpointError(f"{cf.filename}: no path given for this checkpoint of {name}")
    loaded = set()
    used = []
    for cf in spec.checkpoints:
        path = Path(paths[cf.filename])
        obj = read_checkpoint(path)
        sd = state_dict_from(obj, cf.role, path)
        del obj
        if cf.role == "vit":
            sd, _ = filter_vit_file(sd, len(_vit_blocks(model.visual_encoder)))
            loaded |= apply_state_dict(model.visual_encoder, sd, path, prefix="visual_encoder.",
                                       vision=model.visual_encoder)
            if spec.vit_precision == "fp16":  # LAVIS: convert_weights_to_fp16 right after the ViT file
                round_to_fp16_(model.visual_encoder)
        else:
            sd, _ = filter_model_file(sd, model.has_itm)
            loaded |= apply_state_dict(model, sd, path, vision=model.visual_encoder)
        del sd
        used.append(str(path))
    if spec.vit_precision == "fp16":
        # ViT params are float16 in LAVIS: any ViT value from the model file is rounded on copy
        round_to_fp16_(model.visual_encoder)
    check_complete(model, loaded, used)
    model.eval()


def _vit_blocks(vision: nn.Module):
    if hasattr(vision, "blocks"):
        return vision.blocks
    return vision.transformer.resblocks


def _layout(module: nn.Module) -> Dict[str, Tuple[Tuple[int, ...], torch.dtype]]:
    return {k: (tuple(v.shape), v.dtype) for k, v in module.state_dict().items()}


def _atomic_save(obj, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".part", dir=str(path.parent))
    os.close(fd)
    try:
        torch.save(obj, tmp)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def _protocol_sd(layout: Dict[str, Tuple[Tuple[int, ...], torch.dtype]], prefix: str = "") -> Dict[str, torch.Tensor]:
    out = {}
    for k in sorted(layout):
        shape, dtype = layout[k]
        full = prefix + k
        out[k] = protocol_tensor(full, shape, dtype, seed_key_for(full))
    return out


def write_deterministic_checkpoints(name: str, out_dir, image_size: Optional[int] = None,
                                    tiny: bool = False) -> dict:
    """Write golden-protocol weights as files in the official layout and return {filename: path}.

    * BLIP-2 ViT files (eva_vit_g.pth / clip_vit_L.pth): plain un-prefixed ViT state dict in the
      published 224-px layout (seed keys are the prefixed model keys, values exact fp32).
    * blip2_pretrained*.pth: {"model": sd} without visual_encoder.* (frozen params are not saved).
    * blip2_finetune_coco.pth: {"model": sd} with everything incl. the ViT at the model size.
    * blip_coco_retrieval.pth: incl. momentum encoders (same values as their online copies'
      keys would give under the protocol, i.e. seeded by their own *_m key names) and queues.
    * model_base_capfilt_large.pth: {"model": sd} of the feature extractor's layout.
    ``image_size`` sets the model-file layout (pos_embed) where the file is at model size.
    """
    spec = _spec(name)
    out_dir = Path(out_dir)
    size = int(image_size or spec.image_size)
    model = build_model(name, size, tiny)
    layout = _layout(model)
    result = {}
    for cf in spec.checkpoints:
        path = out_dir / cf.filename
        if cf.role == "vit":
            vit_model = build_model(name, _VIT_FILE_IMAGE_SIZE, tiny).visual_encoder
            sd = _protocol_sd(_layout(vit_model), prefix="visual_encoder.")
            del vit_model
            _atomic_save(sd, path)
        else:
            lay = dict(layout)
            if spec.freeze_vit:  # LAVIS _save_checkpoint drops frozen parameters
                lay = {k: v for k, v in lay.items() if not k.startswith("visual_encoder.")}
            if spec.queue_size:
                for k, v in list(layout.items()):
                    head = k.split(".", 1)[0]
                    if head in ("visual_encoder", "text_encoder", "vision_proj", "text_proj"):
                        lay[head + "_m." + k.split(".", 1)[1]] = v
                qs = spec.queue_size if not tiny else 8
                e = model.embed_dim
                lay["image_queue"] = ((e, qs), torch.float32)
                lay["text_queue"] = ((e, qs), torch.float32)
                lay["idx_queue"] = ((1, qs), torch.int64)
                lay["queue_ptr"] = ((1,), torch.int64)
            sd = _protocol_sd(lay)
            _atomic_save({"model": sd}, path)
        del sd
        result[cf.filename] = path
    return result


def deterministic_model(name: str, work_dir, image_size: Optional[int] = None, tiny: bool = False) -> FeatureExtractor:
    """Convenience: write the protocol files into ``work_dir`` and load them with the real loader."""
    paths = write_deterministic_checkpoints(name, work_dir, image_size, tiny)
    m = build_model(name, image_size, tiny)
    load_checkpoint_files(m, name, paths, image_size, tiny)
    return m
