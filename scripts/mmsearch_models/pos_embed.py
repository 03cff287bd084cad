"""Position-embedding resizing exactly as LAVIS does it when a checkpoint's grid differs.

* ``interpolate_vit_pos_embed``  - lavis.models.vit.interpolate_pos_embed (BLIP ViT-B) and
  lavis.models.eva_vit.interpolate_pos_embed (EVA ViT-g): [1, extra+g*g, D], class token kept,
  bicubic, align_corners=False.
* ``interpolate_clip_pos_embed`` - lavis.models.clip_vit.interpolate_pos_embed: [1+g*g, D],
  bicubic, **align_corners=True**.
(torch bicubic uses A = -0.75.)
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def interpolate_vit_pos_embed(pos_embed: torch.Tensor, num_patches: int, num_extra_tokens: int = 1) -> torch.Tensor:
    dim = pos_embed.shape[-1]
    orig = int((pos_embed.shape[-2] - num_extra_tokens) ** 0.5)
    new = int(num_patches ** 0.5)
    if orig == new:
        return pos_embed
    extra = pos_embed[:, :num_extra_tokens]
    grid = pos_embed[:, num_extra_tokens:].reshape(-1, orig, orig, dim).permute(0, 3, 1, 2)
    grid = F.interpolate(grid, size=(new, new), mode="bicubic", align_corners=False)
    grid = grid.permute(0, 2, 3, 1).flatten(1, 2)
    return torch.cat((extra, grid), dim=1)


# BLIP and EVA use the same algorithm
interpolate_eva_pos_embed = interpolate_vit_pos_embed


def interpolate_clip_pos_embed(pos_embed: torch.Tensor, grid_size: int) -> torch.Tensor:
    new_len = grid_size * grid_size + 1
    if pos_embed.shape[0] == new_len:
        return pos_embed
    tok, img = pos_embed[:1], pos_embed[1:]
    old = int(math.sqrt(len(img)))
    img = img.reshape(1, old, old, -1).permute(0, 3, 1, 2)
    img = F.interpolate(img, size=(grid_size, grid_size), mode="bicubic", align_corners=True)
    img = img.permute(0, 2, 3, 1).reshape(1, grid_size * grid_size, -1)[0]
    return torch.cat([tok, img], dim=0)
