"""Resampling a learned 2-D position embedding to another patch grid (bicubic, as in ViT, Dosovitskiy
et al. 2021, section 3.2 "Fine-tuning and higher resolution", and DINOv2's ``interpolate_pos_encoding``)."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor

from sslkit.errors import SSLKitError


def resample_grid(
    pos: Tensor, old_grid: tuple[int, int], new_grid: tuple[int, int], antialias: bool, offset: float
) -> Tensor:
    """``[1, h0 * w0, D]`` patch position embeddings -> ``[1, h * w, D]`` by bicubic interpolation.

    Computed in float32 and cast back. With ``antialias`` and ``offset`` 0 it equals timm's
    ``resample_abs_pos_embed`` (the kernel timm applies when loading weights for another image
    size and in ``dynamic_img_size`` mode); without anti-aliasing, the plain bicubic kernel of the
    DINO / DINOv2 code. ``offset`` 0 interpolates to the output size ``(h, w)``, i.e. source
    coordinates ``(i + 0.5) * h0 / h - 0.5``. An ``offset`` > 0 reproduces DINO / DINOv2's
    ``interpolate_offset`` (0.1 there): the interpolation is given the scale factors
    ``((h + offset) / h0, (w + offset) / w0)`` instead of the size, so that the output is still
    ``h x w`` but the source coordinates are ``(i + 0.5) * h0 / (h + offset) - 0.5``. Returns ``pos``
    itself when the grids match (whatever the offset, as the official code does).
    """
    if tuple(old_grid) == tuple(new_grid):
        return pos
    dim = pos.shape[-1]
    grid = pos.float().reshape(1, old_grid[0], old_grid[1], dim).permute(0, 3, 1, 2)
    if offset:
        scale = ((new_grid[0] + offset) / old_grid[0], (new_grid[1] + offset) / old_grid[1])
        grid = F.interpolate(grid, scale_factor=scale, mode="bicubic", align_corners=False, antialias=antialias)
        if tuple(grid.shape[-2:]) != tuple(new_grid):
            raise SSLKitError(
                f"vit: position-embedding offset {offset} resamples the {old_grid[0]}x{old_grid[1]} grid to "
                f"{grid.shape[-2]}x{grid.shape[-1]} instead of {new_grid[0]}x{new_grid[1]}; use an offset such as "
                f"0.1 (DINO / DINOv2) or 0"
            )
    else:
        grid = F.interpolate(grid, size=new_grid, mode="bicubic", align_corners=False, antialias=antialias)
    return grid.permute(0, 2, 3, 1).reshape(1, new_grid[0] * new_grid[1], dim).to(pos.dtype)
