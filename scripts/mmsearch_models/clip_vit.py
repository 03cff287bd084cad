"""OpenAI CLIP ViT-L/14 visual tower as LAVIS builds it for BLIP-2 (``lavis.models.clip_vit``).

conv1 without bias, class_embedding + positional_embedding, ln_pre, 23 of the 24 residual
blocks (the last is dropped), no ln_post / proj. nn.MultiheadAttention (sequence-first),
QuickGELU, LayerNorm eps 1e-5.
"""

from collections import OrderedDict

import torch
from torch import nn


class QuickGELU(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.sigmoid(1.702 * x)


class ResidualAttentionBlock(nn.Module):
    def __init__(self, d_model: int, n_head: int, mlp_hidden: int):
        super().__init__()
        self.attn = nn.MultiheadAttention(d_model, n_head)
        self.ln_1 = nn.LayerNorm(d_model)
        self.mlp = nn.Sequential(OrderedDict([
            ("c_fc", nn.Linear(d_model, mlp_hidden)),
            ("gelu", QuickGELU()),
            ("c_proj", nn.Linear(mlp_hidden, d_model)),
        ]))
        self.ln_2 = nn.LayerNorm(d_model)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.ln_1(x)
        x = x + self.attn(h, h, h, need_weights=False)[0]
        x = x + self.mlp(self.ln_2(x))
        return x


class Transformer(nn.Module):
    def __init__(self, width: int, layers: int, heads: int, mlp_hidden: int):
        super().__init__()
        self.resblocks = nn.ModuleList([ResidualAttentionBlock(width, heads, mlp_hidden) for _ in range(layers)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for blk in self.resblocks:
            x = blk(x)
        return x


class ClipVisionTransformer(nn.Module):
    def __init__(self, image_size: int = 224, patch_size: int = 14, width: int = 1024,
                 layers: int = 23, heads: int = 16, mlp_hidden: int = 4096):
        super().__init__()
        self.image_size = image_size
        self.patch_size = patch_size
        self.embed_dim = width
        self.depth = layers
        self.num_patches = (image_size // patch_size) ** 2
        self.conv1 = nn.Conv2d(3, width, kernel_size=patch_size, stride=patch_size, bias=False)
        self.class_embedding = nn.Parameter(torch.zeros(width))
        self.positional_embedding = nn.Parameter(torch.zeros(self.num_patches + 1, width))
        self.ln_pre = nn.LayerNorm(width)
        self.transformer = Transformer(width, layers, heads, mlp_hidden)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv1(x)
        x = x.reshape(x.shape[0], x.shape[1], -1).permute(0, 2, 1)
        cls = self.class_embedding + torch.zeros(x.shape[0], 1, x.shape[-1], dtype=x.dtype, device=x.device)
        x = torch.cat([cls, x], dim=1)
        x = x + self.positional_embedding
        x = self.ln_pre(x)
        x = x.permute(1, 0, 2)
        x = self.transformer(x)
        return x.permute(1, 0, 2)
