"""Building blocks of the DINOv2 Vision Transformer (ViT: Dosovitskiy et al. 2021, eq. 1-4; LayerScale: Touvron et
al. 2021; SwiGLU: Shazeer 2020).

Module and parameter names follow timm's ``VisionTransformer`` (``attn.qkv``, ``attn.proj``,
``ls1.gamma``, ``mlp.fc1`` / ``mlp.fc2``), so that weights convert to and from timm by renaming
almost nothing. The SwiGLU feed-forward packs its two input projections into one ``fc1`` like
timm's ``SwiGLUPacked`` (the official DINOv2 release calls them ``w12`` / ``w3``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

LAYER_NORM_EPS = 1e-6


class PatchEmbed(nn.Module):
    """Non-overlapping ``patch_size`` x ``patch_size`` patches -> ``embed_dim`` (one strided conv)."""

    def __init__(self, patch_size: int, in_chans: int, embed_dim: int) -> None:
        super().__init__()
        self.proj = nn.Conv2d(in_chans, embed_dim, kernel_size=patch_size, stride=patch_size)

    def forward(self, images: Tensor) -> Tensor:
        """``[B, C, H, W]`` -> ``[B, D, H / p, W / p]``."""
        result: Tensor = self.proj(images)
        return result


AttentionKernel = Literal["auto", "sdpa", "explicit"]


def _explicit_attention(q: Tensor, k: Tensor, v: Tensor, attn_mask: Tensor | None = None) -> Tensor:
    """``softmax(q k^T / sqrt(d)) v`` as three plain kernels (Vaswani et al. 2017, eq. 1); keys where the
    boolean ``attn_mask`` is False get no weight."""
    scores = (q * q.shape[-1] ** -0.5) @ k.transpose(-2, -1)
    if attn_mask is not None:
        scores = scores.masked_fill(~attn_mask, float("-inf"))
    weights = F.softmax(scores, dim=-1)
    return weights.to(v.dtype) @ v


def _cpu_reduced_precision(x: Tensor) -> bool:
    return x.device.type == "cpu" and (torch.is_autocast_enabled("cpu") or x.dtype in (torch.bfloat16, torch.float16))


def scaled_linear(x: Tensor, linear: nn.Linear, scale: Tensor | None) -> Tensor:
    """``linear(x) * scale`` (per output channel), computed as one linear layer with the scale folded
    into its weight and bias: ``x (s W)^T + s b``. The same function and gradients as the separate
    multiply (LayerScale: Touvron et al. 2021, CaiT, section 2.1, a diagonal matrix applied to the branch
    output), without the elementwise pass over every token forward and the two backward: scaling the
    ``[out, in]`` weight is cheaper than scaling the ``[tokens, out]`` output as soon as there are more
    tokens than input channels."""
    if scale is None:
        result: Tensor = linear(x)
        return result
    bias = linear.bias * scale if linear.bias is not None else None
    return F.linear(x, linear.weight * scale.unsqueeze(-1), bias)


class Attention(nn.Module):
    """Multi-head self-attention with a fused qkv projection: ``softmax(q k^T / sqrt(d)) v`` per head.

    ``kernel``: ``sdpa`` always calls ``torch.nn.functional.scaled_dot_product_attention``;
    ``explicit`` computes the three matmul/softmax kernels; ``auto`` uses SDPA everywhere except
    on the CPU in bf16/fp16 with sequences of at most ``EXPLICIT_MAX_TOKENS`` tokens, where
    PyTorch's CPU SDPA kernel is 4-8x slower than the explicit form (forward + backward,
    measured in docs/performance.md). In fp32 the CPU SDPA kernel is the faster one (1.6-2.1x
    forward + backward at 17, 65 and 257 tokens on an AVX512 Xeon; within 10% either way up to
    65 tokens on an AVX512-BF16 EPYC), so fp32 keeps it at every length. Both give the same
    values up to rounding.
    """

    #: ``auto`` uses the explicit form on the CPU in reduced precision up to this sequence length.
    EXPLICIT_MAX_TOKENS = 256

    def __init__(self, dim: int, num_heads: int, qkv_bias: bool, kernel: AttentionKernel = "auto") -> None:
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"embed_dim {dim} is not divisible by num_heads {num_heads}")
        self.num_heads = num_heads
        self.kernel = kernel
        self.qkv = nn.Linear(dim, 3 * dim, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)

    def _use_explicit(self, x: Tensor) -> bool:
        if self.kernel == "auto":
            return x.shape[1] <= self.EXPLICIT_MAX_TOKENS and _cpu_reduced_precision(x)
        return self.kernel == "explicit"

    def forward(self, x: Tensor, attn_mask: Tensor | None = None, out_scale: Tensor | None = None) -> Tensor:
        """``attn_mask``: optional bool ``[B, 1, 1, N]``, False for padding keys (never attended to);
        ``out_scale``: optional per-channel scale of the output (LayerScale, folded into ``proj``)."""
        b, n, d = x.shape
        qkv = self.qkv(x).reshape(b, n, 3, self.num_heads, d // self.num_heads).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)
        attend = _explicit_attention if self._use_explicit(x) else F.scaled_dot_product_attention
        x = attend(q, k, v) if attn_mask is None else attend(q, k, v, attn_mask=attn_mask)  # scale 1 / sqrt(d)
        return scaled_linear(x.transpose(1, 2).reshape(b, n, d), self.proj, out_scale)


class Mlp(nn.Module):
    """``fc2(GELU(fc1(x)))`` with hidden width ``mlp_ratio * dim``."""

    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: Tensor, out_scale: Tensor | None = None) -> Tensor:
        """``out_scale``: optional per-channel scale of the output (LayerScale, folded into ``fc2``)."""
        return scaled_linear(self.act(self.fc1(x)), self.fc2, out_scale)


def swiglu_hidden_dim(dim: int, mlp_ratio: float) -> int:
    """DINOv2's SwiGLU width: 2/3 of the MLP width, rounded up to a multiple of 8
    (4096 for ViT-g: 1536 * 4 * 2 / 3)."""
    return (int(dim * mlp_ratio * 2 / 3) + 7) // 8 * 8


class SwiGLU(nn.Module):
    """``fc2(SiLU(a) * b)`` where ``[a, b] = fc1(x)`` (packed: ``fc1`` outputs ``2 * hidden``)."""

    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, 2 * hidden)
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: Tensor, out_scale: Tensor | None = None) -> Tensor:
        """``out_scale``: optional per-channel scale of the output (LayerScale, folded into ``fc2``)."""
        a, b = self.fc1(x).chunk(2, dim=-1)
        return scaled_linear(F.silu(a) * b, self.fc2, out_scale)


class LayerScale(nn.Module):
    """Per-channel learnable scale ``gamma`` (initialised to ``init_value``). :class:`Block` folds it
    into the last linear layer of each branch (:func:`scaled_linear`) instead of calling it."""

    def __init__(self, dim: int, init_value: float) -> None:
        super().__init__()
        self.gamma = nn.Parameter(torch.full((dim,), init_value))

    def forward(self, x: Tensor) -> Tensor:
        return x * self.gamma


def drop_path(x: Tensor, rate: float) -> Tensor:
    """Stochastic depth: zero whole samples with probability ``rate``, scale the rest by
    ``1 / (1 - rate)`` so that the expectation is unchanged."""
    keep = 1.0 - rate
    mask = x.new_empty((x.shape[0],) + (1,) * (x.ndim - 1)).bernoulli_(keep)
    return x * mask.div_(keep)


#: Above this drop-path rate a block computes its residual branches on the kept samples only.
SUBSET_DROP_PATH_ABOVE = 0.1


class Block(nn.Module):
    """Pre-norm transformer block: ``x + ls1(attn(norm1(x)))``, then ``x + ls2(mlp(norm2(x)))``
    (each LayerScale folded into its branch's last linear layer, :func:`scaled_linear`).

    Drop-path (training only) drops each residual branch per sample. Above a rate of 0.1 it
    follows DINOv2's faster form: the branch runs on a random subset of
    ``max(1, int(B * (1 - rate)))`` samples and is added back scaled by ``B / subset`` (same
    expectation, and the dropped samples cost nothing).
    """

    def __init__(
        self,
        dim: int,
        num_heads: int,
        mlp: nn.Module,
        qkv_bias: bool,
        layerscale_init: float | None,
        drop_path_rate: float,
        attention: AttentionKernel = "auto",
    ) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=LAYER_NORM_EPS)
        self.attn = Attention(dim, num_heads, qkv_bias, attention)
        self.ls1 = LayerScale(dim, layerscale_init) if layerscale_init is not None else nn.Identity()
        self.norm2 = nn.LayerNorm(dim, eps=LAYER_NORM_EPS)
        self.mlp = mlp
        self.ls2 = LayerScale(dim, layerscale_init) if layerscale_init is not None else nn.Identity()
        self.drop_path_rate = drop_path_rate

    def _attn_branch(self, x: Tensor, attn_mask: Tensor | None = None) -> Tensor:
        result: Tensor = self.attn(self.norm1(x), attn_mask, _gamma(self.ls1))
        return result

    def _mlp_branch(self, x: Tensor, attn_mask: Tensor | None = None) -> Tensor:
        result: Tensor = self.mlp(self.norm2(x), _gamma(self.ls2))
        return result

    def forward(self, x: Tensor, attn_mask: Tensor | None = None) -> Tensor:
        """``attn_mask``: optional bool ``[B, 1, 1, N]``, False for padding tokens (sequences of
        different lengths, e.g. after dropping masked patches)."""
        rate = self.drop_path_rate if self.training else 0.0
        if rate > SUBSET_DROP_PATH_ABOVE:
            x = _add_on_subset(x, self._attn_branch, rate, attn_mask)
            return _add_on_subset(x, self._mlp_branch, rate, attn_mask)
        if rate > 0.0:
            x = x + drop_path(self._attn_branch(x, attn_mask), rate)
            return x + drop_path(self._mlp_branch(x), rate)
        x = x + self._attn_branch(x, attn_mask)
        return x + self._mlp_branch(x)


def _gamma(layer_scale: nn.Module) -> Tensor | None:
    """The LayerScale's ``gamma``, or ``None`` without LayerScale (``nn.Identity``)."""
    return layer_scale.gamma if isinstance(layer_scale, LayerScale) else None


def _add_on_subset(x: Tensor, branch: Callable[[Tensor, Tensor | None], Tensor], rate: float,
                   attn_mask: Tensor | None) -> Tensor:
    """``x`` plus ``branch`` computed on a random subset of the batch, rescaled to keep the expectation."""
    b = x.shape[0]
    keep = max(int(b * (1.0 - rate)), 1)
    subset = torch.randperm(b, device=x.device)[:keep]
    residual = branch(x[subset], attn_mask[subset] if attn_mask is not None else None)
    return torch.index_add(x, 0, subset, residual.to(x.dtype), alpha=b / keep)
