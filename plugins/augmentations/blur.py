"""Gaussian blur of selected crops with one sigma per crop, as separable shifted sums.

The result equals ``kornia.filters.gaussian_blur2d`` (same kernel weights from
``kornia.filters.get_gaussian_kernel1d``, reflect border): each pass adds the ``k`` shifted
copies of the reflect-padded crops, weighted per crop. On the CPU this runs about 5x faster
than kornia's grouped convolution for 224 px crops (measured: the per-crop weights make the
convolution a depthwise one with thousands of groups, which runs far from peak), and in
cache-sized chunks of crops; on accelerators all selected crops go at once.
"""

from __future__ import annotations

import kornia
import torch
import torch.nn.functional as F
from torch import Tensor

#: On the CPU, crops are blurred in chunks of about this many floats (a few MB: cache-resident).
CPU_CHUNK_FLOATS = 1 << 19


def _separable(x: Tensor, weights: Tensor) -> Tensor:
    """Blur ``x [n, C, H, W]`` with the 1-D kernels ``weights [n, k]`` along W then H (reflect border)."""
    k = weights.shape[1]
    pad = k // 2
    height, width = x.shape[-2:]
    w = weights.view(-1, 1, 1, k).to(x.dtype)
    padded = F.pad(x, (pad, pad, 0, 0), mode="reflect")
    rows = padded[..., 0:width] * w[..., 0:1]
    for j in range(1, k):
        rows.addcmul_(padded[..., j : j + width], w[..., j : j + 1])
    padded = F.pad(rows, (0, 0, pad, pad), mode="reflect")
    out = padded[..., 0:height, :] * w[..., 0:1]
    for j in range(1, k):
        out.addcmul_(padded[..., j : j + height, :], w[..., j : j + 1])
    return out


def gaussian_blur_rows_(x: Tensor, rows: Tensor, sigma: Tensor, kernel_size: int) -> Tensor:
    """Blur crops ``x[rows]`` (``x``: ``[N, C, H, W]``) in place with standard deviations ``sigma [len(rows)]``."""
    if not rows.numel():
        return x
    weights = kornia.filters.get_gaussian_kernel1d(kernel_size, sigma.to(x.device, torch.float32)[:, None])
    rows = rows.to(x.device)
    per_chunk = len(rows) if x.device.type != "cpu" else max(1, CPU_CHUNK_FLOATS // x[0].numel())
    for start in range(0, len(rows), per_chunk):
        chunk = rows[start : start + per_chunk]
        x.index_copy_(0, chunk, _separable(x.index_select(0, chunk), weights[start : start + per_chunk]))
    return x
