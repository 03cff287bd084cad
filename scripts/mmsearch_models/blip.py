"""BLIP (v1) feature extractor: LAVIS ``blip_feature_extractor`` / ``blip_retrieval``.

Keys (``visual_encoder.*``, ``text_encoder.*``, ``vision_proj``, ``text_proj``, ``itm_head``,
``temp``) follow the LAVIS checkpoints; momentum encoders and queues are not kept (dropped by
the loader, see checkpoint.py).
"""

from typing import Tuple

import torch
import torch.nn.functional as F
from torch import nn

from .bert import MedBertModel
from .vit import VisionTransformer


class FeatureExtractor(nn.Module):
    """Common interface of the BLIP and BLIP-2 feature extractors (eval only).

    encode_image(pixels) -> (vision_tokens [B,Nv,Dv], image_embeds [B,Ni,D], image_embeds_proj [B,Ni,E])
    encode_text(input_ids, attention_mask) -> (text_embeds [B,L,D], text_embeds_proj [B,L,E])
    encode_multimodal(vision_tokens, input_ids, attention_mask) -> (multimodal_embeds [B,M,D], itm_logits [B,2|0])
    ``*_proj`` outputs are L2-normalised along the last axis.

    Attributes: family ("blip" | "blip2"), embed_dim (E), hidden (D), vision_width (Dv),
    vision_tokens (Nv), image_tokens (Ni), num_query_tokens (0 for BLIP, 32 for BLIP-2 - not
    ``query_tokens``, which is the BLIP-2 parameter of that checkpoint name), image_size, has_itm,
    enc_token_id (BLIP 30523, BLIP-2 -1).
    """

    family: str
    embed_dim: int
    hidden: int
    vision_width: int
    vision_tokens: int
    image_tokens: int
    num_query_tokens: int
    image_size: int
    has_itm: bool
    enc_token_id: int


class BlipFeatureExtractor(FeatureExtractor):
    def __init__(self, image_size: int = 224, embed_dim: int = 256, vit: dict = None, bert: dict = None,
                 has_itm: bool = True, enc_token_id: int = 30523):
        super().__init__()
        vit = dict(vit or {})
        bert = dict(bert or {})
        self.visual_encoder = VisionTransformer(image_size=image_size, **vit)
        vision_width = self.visual_encoder.embed_dim
        self.text_encoder = MedBertModel(encoder_width=vision_width, **bert)
        hidden = self.text_encoder.hidden
        self.vision_proj = nn.Linear(vision_width, embed_dim)
        self.text_proj = nn.Linear(hidden, embed_dim)
        self.has_itm = bool(has_itm)
        if has_itm:
            self.itm_head = nn.Linear(hidden, 2)
        else:
            self.itm_head = nn.Identity()  # no parameters -> no keys; never called
        self.temp = nn.Parameter(torch.tensor(0.07))

        self.family = "blip"
        self.embed_dim = embed_dim
        self.hidden = hidden
        self.vision_width = vision_width
        self.image_size = image_size
        self.vision_tokens = self.visual_encoder.num_patches + 1
        self.image_tokens = self.vision_tokens
        self.num_query_tokens = 0
        self.enc_token_id = int(enc_token_id)

    @torch.jit.export
    def encode_image(self, pixels: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        image_embeds = self.visual_encoder(pixels)
        proj = F.normalize(self.vision_proj(image_embeds), dim=-1)
        return image_embeds, image_embeds, proj

    @torch.jit.export
    def encode_text(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        text_embeds = self.text_encoder.forward_text(input_ids, attention_mask)
        proj = F.normalize(self.text_proj(text_embeds), dim=-1)
        return text_embeds, proj

    @torch.jit.export
    def encode_multimodal(self, vision_tokens: torch.Tensor, input_ids: torch.Tensor,
                          attention_mask: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        ids = input_ids.clone()
        ids[:, 0] = self.enc_token_id
        out = self.text_encoder.forward_multimodal(ids, attention_mask, vision_tokens)
        if self.has_itm:
            itm = self.itm_head(out[:, 0, :])
        else:
            itm = torch.zeros(out.shape[0], 0, dtype=out.dtype, device=out.device)
        return out, itm

    def forward(self, pixels: torch.Tensor, input_ids: torch.Tensor, attention_mask: torch.Tensor):
        v, _, _ = self.encode_image(pixels)
        return self.encode_multimodal(v, input_ids, attention_mask)
