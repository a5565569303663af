"""A small, real patch backbone for unit tests of components that run a model themselves (a loss
that keeps its own copy of the teacher, for instance): fast on a CPU, deterministic under
``torch.manual_seed``, and following the :class:`~sslkit.components.Backbone` contract
(masking, CLS and patch tokens)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from sslkit.components import Backbone, BackboneOutput
from sslkit.outputs import Masking


class TinyPatchBackbone(Backbone):
    """Patch embedding (a ``patch_size`` strided convolution), a learnable CLS token, a mask
    token that replaces masked patch embeddings, a learnable position embedding for a
    ``grid x grid`` patch grid, one pre-norm MLP residual block and a final LayerNorm.

    ``forward(images [M, 3, grid * patch_size, grid * patch_size], masks [M, grid**2] | None)``
    returns CLS ``[M, D]`` and patch tokens ``[M, grid**2, D]``.
    """

    supports_masking = True
    supports_patch_tokens = True
    supports_block_outputs = True
    num_layers = 1

    def __init__(self, embed_dim: int = 32, patch_size: int = 4, grid: int = 4) -> None:
        super().__init__()
        self.embed_dim = embed_dim
        self.patch_size = patch_size
        self.patch_embed = nn.Conv2d(3, embed_dim, kernel_size=patch_size, stride=patch_size)
        self.cls_token = nn.Parameter(torch.randn(1, 1, embed_dim) * 0.02)
        self.mask_token = nn.Parameter(torch.zeros(1, embed_dim))
        self.pos_embed = nn.Parameter(torch.randn(1, 1 + grid * grid, embed_dim) * 0.02)
        self.block = nn.Sequential(nn.LayerNorm(embed_dim), nn.Linear(embed_dim, 2 * embed_dim), nn.GELU(),
                                   nn.Linear(2 * embed_dim, embed_dim))
        self.norm = nn.LayerNorm(embed_dim)

    def forward(self, images: Tensor, masks: Tensor | None = None, *, masking: Masking = "replace",
                blocks: Sequence[int] = ()) -> BackboneOutput:
        """Masked patches replaced by the mask token (``masking="drop"`` is not supported: the engine
        only asks backbones that declare ``supports_token_dropping``); ``blocks=(0,)`` returns the
        block's patch outputs before the final norm."""
        patches = self.patch_embed(images).flatten(2).transpose(1, 2)
        if patches.shape[1] + 1 != self.pos_embed.shape[1]:
            raise ValueError(f"TinyPatchBackbone expects {self.pos_embed.shape[1] - 1} patches per image, got "
                             f"{patches.shape[1]} (image {tuple(images.shape[-2:])}, patch {self.patch_size})")
        if masks is not None:
            patches = torch.where(masks.unsqueeze(-1), self.mask_token.to(patches.dtype), patches)
        tokens = torch.cat([self.cls_token.expand(patches.shape[0], -1, -1), patches], dim=1) + self.pos_embed
        tokens = tokens + self.block(tokens)
        intermediate = {0: tokens[:, 1:]} if 0 in blocks else {}
        tokens = self.norm(tokens)
        return BackboneOutput(cls=tokens[:, 0], patches=tokens[:, 1:], blocks=intermediate)

    def mask_only_parameters(self) -> list[str]:
        """The mask token, used only by a masked forward."""
        return ["mask_token"]
