"""The teacher's regression targets: the normalised mean of its top ``K`` block outputs.

data2vec (Baevski et al. 2022, section 3.3, "Targets") regresses, for every patch position ``t``,

    y_t = (1 / K) * sum_{l = L-K+1}^{L} â_t^l

where ``a^l`` is the output of transformer block ``l`` of the teacher (before the final norm, the
teacher seeing the *unmasked* crop) and ``â^l`` is ``a^l`` normalised. data2vec 2.0 (Baevski et al.
2023, section 3, "Target representations") keeps this form for images with instance normalisation of
each block and a layer normalisation of the average. This module computes exactly that, with both
normalisations selectable:

- ``block_norm`` (``â^l``): ``instance`` (default, data2vec 2.0): each channel normalised over the
  ``N`` patch positions of its crop; ``layer``: each token normalised over its ``D`` channels
  (data2vec 1.0 for vision); ``none``.
- ``target_norm`` (applied to ``y``): ``layer`` (default, data2vec 2.0): each token normalised over
  its channels; ``none``.

All normalisations are parameter-free, in float32, with ``eps = 1e-6`` (1e-5 for instance norm, as
``torch.nn.functional.instance_norm``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor

from sslkit.outputs import Output, StepView
from sslkit.params import param

BlockNorm = Literal["instance", "layer", "none"]
TargetNorm = Literal["layer", "none"]
LAYER_NORM_EPS = 1e-6


@dataclass
class LatentTargetOptions:
    """Options of the ``latent_targets`` output kind (``Output(..., options=(("block_norm", "layer"), ...))``);
    the averaged blocks are the request's ``blocks``."""

    block_norm: BlockNorm = param("instance", "Normalisation of each block output before the average: "
                                              "instance (over positions), layer (over channels) or none.")
    target_norm: TargetNorm = param("layer", "Normalisation of the average: layer (over channels) or none.")


def normalise_block(block: Tensor, how: BlockNorm) -> Tensor:
    """``block`` ``[C, N, D]`` normalised per crop and channel over positions (``instance``), per token
    over channels (``layer``), or unchanged (``none``); float32."""
    x = block.float()
    if how == "instance":
        return F.instance_norm(x.transpose(1, 2)).transpose(1, 2)
    if how == "layer":
        return F.layer_norm(x, x.shape[-1:], eps=LAYER_NORM_EPS)
    return x


def latent_targets(blocks: Sequence[Tensor], block_norm: BlockNorm, target_norm: TargetNorm) -> Tensor:
    """``y = target_norm(mean_l block_norm(a^l))`` for the block outputs ``blocks`` (each ``[C, N, D]``)."""
    if not blocks:
        raise ValueError("latent targets need at least one block output")
    y = torch.stack([normalise_block(b, block_norm) for b in blocks]).mean(dim=0)
    return F.layer_norm(y, y.shape[-1:], eps=LAYER_NORM_EPS) if target_norm == "layer" else y


def produce_latent_targets(request: Output, view: StepView) -> Tensor:
    """Targets ``y`` of the request's model's unmasked ``global`` crops from the block outputs the request
    names in ``blocks`` (the plan puts them into that pass): at every patch position ``[C * B, N, D]``
    (``positions="all"``) or at the ``masked`` / ``visible`` ones ``[M, D]`` in ``masks.nonzero()`` order.
    The normalisations see all positions of a crop (instance norm is over positions) before the selection."""
    options = LatentTargetOptions(**dict(request.options))
    if request.crops != "global" or request.masking not in ("none", "default"):
        raise ValueError(f"{request.describe()}: latent targets are computed on the unmasked global crops "
                         "(crops='global', masking='none')")
    if not request.blocks:
        raise ValueError(f"{request.describe()}: name the averaged blocks, e.g. blocks=(-3, -2, -1)")
    num_layers = int(getattr(view.module(request.model, "backbone"), "num_layers", 0))
    out = view.backbone_pass(request.model, "global", "none")
    indices = sorted({i % num_layers if num_layers else i for i in request.blocks})
    missing = [i for i in indices if i not in out.blocks]
    if missing:
        raise ValueError(f"{request.describe()}: the backbone pass holds blocks {sorted(out.blocks)}, not {missing}")
    y = latent_targets([out.blocks[i] for i in indices], options.block_norm, options.target_norm)
    if request.positions == "all":
        return y
    if view.masks is None:
        raise ValueError(f"{request.describe()}: the step has no masks")
    return y[view.masks if request.positions == "masked" else ~view.masks]
