"""Resizing a patch-embedding kernel to another patch size by the pseudo-inverse resize of FlexiViT
(Beyer et al. 2023, "FlexiViT: One Model for All Patch Sizes", section 3.4, "PI-resize").

With ``B`` the bilinear resize of a ``p0 x p0`` patch to ``p x p`` (a linear map), the new kernel
``w'`` solves ``<x, w> = <B x, w'>`` for every patch ``x``: ``w' = pinv(B^T) w``. Upsampling the kernel
(``p >= p0``) keeps the token of every bilinearly upsampled patch exactly; downsampling is the
least-squares fit.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def resize_patch_kernel(weight: Tensor, size: tuple[int, int]) -> Tensor:
    """``[D, C, h0, w0]`` convolution kernel -> ``[D, C, h, w]`` (computed in float64, cast back)."""
    out_ch, in_ch, h0, w0 = weight.shape
    if (h0, w0) == tuple(size):
        return weight
    basis = torch.eye(h0 * w0, dtype=torch.float64).reshape(h0 * w0, 1, h0, w0)
    resize_t = F.interpolate(basis, size=size, mode="bilinear", align_corners=False).reshape(h0 * w0, -1)  # B^T
    flat = weight.detach().to(torch.float64).reshape(out_ch * in_ch, h0 * w0)
    resized = flat @ torch.linalg.pinv(resize_t).T  # each row: pinv(B^T) w
    out: Tensor = resized.reshape(out_ch, in_ch, *size).to(weight.dtype)
    return out
