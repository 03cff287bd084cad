"""BLIP-2 feature extractor: LAVIS ``blip2_feature_extractor`` (``Blip2Qformer``).

``visual_encoder`` (EVA ViT-g/14 or CLIP ViT-L/14) -> ``ln_vision`` (eps 1e-5) -> Q-Former with
32 learned ``query_tokens``; ``vision_proj`` / ``text_proj`` / ``itm_head`` / ``temp``.
"""

from typing import Tuple

import torch
import torch.nn.functional as F
from torch import nn

from .bert import QFormer
from .blip import FeatureExtractor
from .clip_vit import ClipVisionTransformer
from .eva_vit import EvaVisionTransformer


class Blip2FeatureExtractor(FeatureExtractor):
    def __init__(self, vision_encoder: str = "eva-vit-g14", image_size: int = 224, embed_dim: int = 256,
                 num_query_token: int = 32, vit: dict = None, qformer: dict = None, ln_vision_eps: float = 1e-5):
        super().__init__()
        vit = dict(vit or {})
        qformer = dict(qformer or {})
        if vision_encoder.startswith("eva"):
            self.visual_encoder = EvaVisionTransformer(image_size=image_size, **vit)
        elif vision_encoder.startswith("clip"):
            self.visual_encoder = ClipVisionTransformer(image_size=image_size, **vit)
        else:
            raise ValueError(f"unknown vision encoder {vision_encoder!r}")
        vision_width = self.visual_encoder.embed_dim
        self.ln_vision = nn.LayerNorm(vision_width, eps=ln_vision_eps)
        self.Qformer = QFormer(encoder_width=vision_width, **qformer)
        hidden = self.Qformer.bert.embeddings.word_embeddings.embedding_dim
        self.query_tokens = nn.Parameter(torch.zeros(1, num_query_token, hidden))
        self.vision_proj = nn.Linear(hidden, embed_dim)
        self.text_proj = nn.Linear(hidden, embed_dim)
        self.itm_head = nn.Linear(hidden, 2)
        self.temp = nn.Parameter(torch.tensor(0.07))

        self.family = "blip2"
        self.vision_encoder_name = vision_encoder
        self.embed_dim = embed_dim
        self.hidden = hidden
        self.vision_width = vision_width
        self.image_size = image_size
        self.vision_tokens = self.visual_encoder.num_patches + 1
        self.image_tokens = num_query_token
        self.num_query_tokens = num_query_token
        self.has_itm = True
        self.enc_token_id = -1

    @torch.jit.export
    def encode_image(self, pixels: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        v = self.ln_vision(self.visual_encoder(pixels))
        q = self.query_tokens.expand(v.shape[0], -1, -1)
        image_embeds = self.Qformer.bert.forward_query(q, v)
        proj = F.normalize(self.vision_proj(image_embeds), dim=-1)
        return v, image_embeds, proj

    @torch.jit.export
    def encode_text(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        text_embeds = self.Qformer.bert.forward_text(input_ids, attention_mask)
        proj = F.normalize(self.text_proj(text_embeds), dim=-1)
        return text_embeds, proj

    @torch.jit.export
    def encode_multimodal(self, vision_tokens: torch.Tensor, input_ids: torch.Tensor,
                          attention_mask: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        q = self.query_tokens.expand(vision_tokens.shape[0], -1, -1)
        h = self.Qformer.bert.forward_joint(q, input_ids, attention_mask, vision_tokens)
        out = h[:, : self.num_query_tokens, :]
        itm = self.itm_head(out).mean(dim=1)
        return out, itm

    def forward(self, pixels: torch.Tensor, input_ids: torch.Tensor, attention_mask: torch.Tensor):
        v, _, _ = self.encode_image(pixels)
        return self.encode_multimodal(v, input_ids, attention_mask)
