"""Resampling a learned 2-D position embedding to another patch grid (reference section 7)."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor


def resample_grid(pos: Tensor, old_grid: tuple[int, int], new_grid: tuple[int, int], antialias: bool) -> Tensor:
    """``[1, h0 * w0, D]`` patch position embeddings -> ``[1, h * w, D]`` by bicubic interpolation.

    Computed in float32 and cast back. With ``antialias`` it equals timm's
    ``resample_abs_pos_embed`` (the kernel timm applies when loading weights for another image
    size and in ``dynamic_img_size`` mode); without it, the plain bicubic kernel of the DINOv2
    code. Returns ``pos`` itself when the grids match.
    """
    if tuple(old_grid) == tuple(new_grid):
        return pos
    dim = pos.shape[-1]
    grid = pos.float().reshape(1, old_grid[0], old_grid[1], dim).permute(0, 3, 1, 2)
    grid = F.interpolate(grid, size=new_grid, mode="bicubic", align_corners=False, antialias=antialias)
    return grid.permute(0, 2, 3, 1).reshape(1, new_grid[0] * new_grid[1], dim).to(pos.dtype)
