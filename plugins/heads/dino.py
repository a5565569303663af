"""The DINO projection head (Caron et al. 2021, section 3.1 and appendix; DINOv2, Oquab et al. 2023, section 4).

``x -> MLP (in -> hidden -> ... -> bottleneck, GELU) -> L2-normalise -> prototypes``: an MLP
of ``nlayers`` linear layers (in -> 2048 -> 2048 -> 256 by default) with GELU between them
and optional BatchNorm, an L2 normalisation of the bottleneck, then a bias-free
weight-normalised linear layer to ``out_dim`` prototypes (see
:mod:`sslkit_plugins.heads.prototypes`): with the magnitude ``g`` fixed to 1 (DINO v1, the
default) the outputs are cosine similarities in [-1, 1]; ``trainable_norm`` makes ``g`` a
parameter initialised to 1 (DINOv2). The losses divide the outputs by their temperatures.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from sslkit.components import BuildContext, Head
from sslkit.params import param
from sslkit_plugins.heads.prototypes import NormalizedPrototypes


@dataclass
class DINOHeadParams:
    """Parameters of the ``dino`` head."""

    out_dim: int = param(
        65536,
        "Number of prototypes K (the head's output size): 65536 for ViT-L in DINOv2, 131072 in the "
        "ViT-L/14 and ViT-g recipes; a few thousand is enough for small datasets.",
        ge=1,
    )
    hidden_dim: int = param(2048, "Width of the MLP's hidden layers.", ge=1)
    bottleneck_dim: int = param(
        256, "Width of the MLP's output, L2-normalised before the prototypes (384 in the DINOv2 ViT-L/14 and ViT-g "
        "DINO heads).", ge=1)
    nlayers: int = param(3, "Number of linear layers in the MLP (1: a single linear map to the bottleneck).", ge=1)
    use_bn: bool = param(False, "BatchNorm after every hidden linear layer (off in DINO / DINOv2).")
    trainable_norm: bool = param(
        False,
        "Train the weight-norm magnitude g of the prototype layer (W = g * v / ||v|| per prototype, g "
        "initialised to 1, part of the last layer), as DINOv2 does; false fixes g at 1 (DINO v1's "
        "norm_last_layer).",
    )
    freeze_last_layer_epochs: float = param(
        1.0,
        "Epochs during which the prototype layer (and g) get lr 0 (DINO, Caron et al. 2021, appendix).",
        ge=0.0,
    )


def _mlp(in_dim: int, params: DINOHeadParams) -> nn.Sequential:
    """``nlayers`` linear layers in -> hidden -> ... -> bottleneck, with [BatchNorm,] GELU between them."""
    widths = [in_dim] + [params.hidden_dim] * (params.nlayers - 1) + [params.bottleneck_dim]
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(itertools.pairwise(widths)):
        layers.append(nn.Linear(a, b))
        if i < params.nlayers - 1:
            if params.use_bn:
                layers.append(nn.BatchNorm1d(b))
            layers.append(nn.GELU())
    return nn.Sequential(*layers)


class DINOHead(Head):
    """DINO head: MLP -> L2-normalise -> ``out_dim`` weight-normalised prototypes.

    Input: tokens ``[M, embed_dim]`` (the width comes from ``ctx.embed_dim``); output:
    logits ``[M, out_dim]`` (in [-1, 1] unless ``trainable_norm``). Linear weights are
    initialised trunc-normal with std 0.02 and biases to 0. ``last_layer`` (the prototypes,
    and ``g`` when trainable) gets learning rate 0 during the first ``freeze_last_layer_epochs``
    epochs (:meth:`frozen_for_steps`), which stabilises the start of training (DINO's appendix).
    """

    def __init__(self, params: DINOHeadParams, ctx: BuildContext) -> None:
        super().__init__()
        if ctx.embed_dim is None:
            raise ValueError(f"{type(self).__name__} needs the backbone width (BuildContext.embed_dim)")
        self.out_dim = params.out_dim
        self.params = params
        self.mlp = _mlp(ctx.embed_dim, params)
        for module in self.mlp.modules():
            if isinstance(module, nn.Linear):
                nn.init.trunc_normal_(module.weight, std=0.02)
                nn.init.zeros_(module.bias)
        self.last_layer = NormalizedPrototypes(params.bottleneck_dim, params.out_dim, params.trainable_norm)

    def frozen_for_steps(self, epoch_length: int) -> dict[str, int]:
        """Every parameter of ``last_layer`` (``last_layer.weight`` and, when trainable,
        ``last_layer.g``), frozen for ``round(freeze_last_layer_epochs * epoch_length)`` steps."""
        steps = round(self.params.freeze_last_layer_epochs * epoch_length)
        return {f"last_layer.{name}": steps for name, _ in self.last_layer.named_parameters()}

    def forward(self, x: Tensor) -> Tensor:
        x = self.mlp(x)
        eps = 1e-6 if x.dtype == torch.float16 else 1e-12
        logits: Tensor = self.last_layer(F.normalize(x, dim=-1, eps=eps))  # Module.__call__ returns Any
        return logits
