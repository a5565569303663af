"""The student-only predictor ``latent_predictor`` (I-JEPA, Assran et al. 2023, section 3, "Predictor";
data2vec 2.0, Baevski et al. 2023, section 3, decoder).

Input: the student's patch tokens ``[C, N, D]`` of its masked pass and the step's bool masks ``[C, N]``
(handed over by the ``latent_predictions`` producer, :mod:`sslkit_latent_mim.predictions`).
Output: one prediction ``[M, D_out]`` per masked position, in ``masks.nonzero()`` order.

With ``depth >= 1`` (the I-JEPA predictor, for a student that dropped the masked tokens):

    h = W_in patches + mask * m + p        # [C, N, P]: m a learned mask token, p fixed 2-D sin-cos positions
    h = TransformerBlocks(h)                # ``depth`` pre-norm blocks, attention over all N positions
    prediction = W_out LN(h)[mask]          # [M, D_out]

The mask token is *added* at the masked positions: after a ``drop`` pass their encoder features are
zero, so ``h`` there is ``b_in + m + p`` (I-JEPA's mask token with its position); after a ``replace``
pass it marks them on top of the encoder's output. With ``depth = 0`` the predictor is the per-token
MLP ``W_out GELU(W_in x + m)`` on the masked rows only, which suffices after a ``replace`` pass (the
encoder already mixed context into them, as in data2vec 1.0) but sees no context after a ``drop`` pass.

The position embedding is the fixed 2-D sin-cos embedding of MAE / I-JEPA on a square grid of
``sqrt(N)`` patches, so it needs no parameter and follows any crop size.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from sslkit.components import BuildContext, Head
from sslkit.params import param


@dataclass
class LatentPredictorParams:
    """Parameters of the ``latent_predictor`` student-only module."""

    dim: int = param(128, "Predictor width P (I-JEPA's predictor is narrower than the encoder).", ge=1)
    depth: int = param(2, "Transformer blocks of the predictor; 0: a per-token MLP on the masked rows (only "
                          "meaningful with the student's masking 'replace').", ge=0)
    num_heads: int = param(4, "Attention heads of each predictor block (must divide dim).", ge=1)
    mlp_ratio: float = param(4.0, "Hidden width of each block's MLP, as a multiple of dim.", gt=0.0)
    out_dim: int | None = param(None, "Width of the predictions; null: the backbone width (the targets' width).",
                                ge=1)


def sincos_2d(n: int, dim: int, device: torch.device, dtype: torch.dtype) -> Tensor:
    """Fixed 2-D sin-cos position embedding ``[n, dim]`` of a square ``sqrt(n) x sqrt(n)`` grid (MAE, He et
    al. 2022; I-JEPA): half the channels encode the row, half the column, each as
    ``[sin(pos * w_k), cos(pos * w_k)]`` with ``w_k = 10000^(-k / (dim / 4))``; zero-padded to ``dim``."""
    side = math.isqrt(n)
    if side * side != n:
        raise ValueError(f"latent_predictor: {n} patch tokens do not form a square grid")
    quarter = dim // 4
    omega = 1.0 / 10000 ** (torch.arange(quarter, device=device, dtype=torch.float32) / max(quarter, 1))
    coords = torch.arange(side, device=device, dtype=torch.float32)
    rows, cols = torch.meshgrid(coords, coords, indexing="ij")
    parts = []
    for pos in (rows.reshape(-1), cols.reshape(-1)):
        angles = pos[:, None] * omega[None, :]
        parts += [angles.sin(), angles.cos()]
    embedding = torch.cat(parts, dim=1)
    return nn.functional.pad(embedding, (0, dim - embedding.shape[1])).to(dtype)


class LatentPredictor(Head):
    """Predicts the teacher's targets at the masked positions from the student's context (see the module doc)."""

    def __init__(self, params: LatentPredictorParams, ctx: BuildContext) -> None:
        super().__init__()
        if ctx.embed_dim is None:
            raise ValueError("latent_predictor needs the backbone width (BuildContext.embed_dim)")
        if params.depth and params.dim % params.num_heads:
            raise ValueError(f"latent_predictor: dim {params.dim} is not divisible by num_heads {params.num_heads}")
        self.params = params
        self.in_dim = ctx.embed_dim
        self.out_dim = params.out_dim or ctx.embed_dim
        self.embed = nn.Linear(self.in_dim, params.dim)
        self.mask_token = nn.Parameter(torch.zeros(params.dim))
        nn.init.trunc_normal_(self.mask_token, std=0.02)
        self.blocks = nn.ModuleList(
            nn.TransformerEncoderLayer(params.dim, params.num_heads, int(params.dim * params.mlp_ratio), dropout=0.0,
                                       activation="gelu", batch_first=True, norm_first=True)
            for _ in range(params.depth))
        # before the output projection: the blocks' final LayerNorm, or the MLP's non-linearity (depth 0)
        self.pre_proj = nn.LayerNorm(params.dim) if params.depth else nn.GELU()
        self.proj = nn.Linear(params.dim, self.out_dim)

    def forward(self, patches: Tensor, masks: Tensor) -> Tensor:
        """Patch tokens ``[C, N, D]`` and bool masks ``[C, N]`` -> predictions ``[M, out_dim]`` at the masked
        positions, in ``masks.nonzero()`` order."""
        if patches.dim() != 3 or patches.shape[-1] != self.in_dim or masks.shape != patches.shape[:2]:
            raise ValueError(f"latent_predictor expects patch tokens [C, N, {self.in_dim}] and masks [C, N], got "
                             f"{tuple(patches.shape)} and {tuple(masks.shape)}")
        masks = masks.bool()
        if not self.blocks:
            return self.proj(self.pre_proj(self.embed(patches[masks]) + self.mask_token))
        h = self.embed(patches) + masks.unsqueeze(-1).to(patches.dtype) * self.mask_token
        h = h + sincos_2d(h.shape[1], h.shape[2], h.device, h.dtype)
        for block in self.blocks:
            h = block(h)
        return self.proj(self.pre_proj(h[masks]))
