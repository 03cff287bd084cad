"""EVA-CLIP ViT-g/14 as LAVIS builds it for BLIP-2 (``lavis.models.eva_vit``).

1408 wide, 16 heads of 88, MLP 6144, LayerNorm eps 1e-6, exact GELU, pre-norm, no layer scale,
no relative position bias, 39 blocks (EVA-CLIP-g's 40th is dropped) and no final norm.
qkv Linear without bias; the attention bias is cat(q_bias, 0, v_bias); q is scaled before q.k.
"""

import torch
import torch.nn.functional as F
from torch import nn

from .vit import VisionTransformer


class EvaAttention(nn.Module):
    def __init__(self, dim: int, num_heads: int):
        super().__init__()
        self.num_heads = num_heads
        head_dim = dim // num_heads
        self.scale = float(head_dim ** -0.5)
        self.qkv = nn.Linear(dim, dim * 3, bias=False)
        self.q_bias = nn.Parameter(torch.zeros(dim))
        self.v_bias = nn.Parameter(torch.zeros(dim))
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, N, C = x.shape
        bias = torch.cat((self.q_bias, torch.zeros_like(self.v_bias), self.v_bias))
        qkv = F.linear(x, self.qkv.weight, bias)
        qkv = qkv.reshape(B, N, 3, self.num_heads, -1).permute(2, 0, 3, 1, 4)
        q, k, v = qkv[0], qkv[1], qkv[2]
        q = q * self.scale
        attn = (q @ k.transpose(-2, -1)).softmax(dim=-1)
        x = (attn @ v).transpose(1, 2).reshape(B, N, -1)
        return self.proj(x)


class EvaVisionTransformer(VisionTransformer):
    def __init__(self, image_size: int = 224, patch_size: int = 14, embed_dim: int = 1408,
                 depth: int = 39, num_heads: int = 16, mlp_hidden: int = 6144, eps: float = 1e-6):
        super().__init__(image_size, patch_size, embed_dim, depth, num_heads, mlp_hidden, eps,
                         attention=EvaAttention, final_norm=False)
