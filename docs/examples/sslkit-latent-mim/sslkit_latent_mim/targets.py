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
    """Options of the ``latent_targets`` output kind (``Output(..., options=(("top_k", 4), ...))``)."""

    top_k: int = param(4, "K: the number of last blocks averaged.", ge=1)
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


def top_block_indices(num_layers: int, top_k: int) -> tuple[int, ...]:
    """The indices ``L-K .. L-1`` of the last ``top_k`` of ``num_layers`` blocks."""
    if not 1 <= top_k <= num_layers:
        raise ValueError(f"top_k {top_k} must be between 1 and the backbone's {num_layers} blocks")
    return tuple(range(num_layers - top_k, num_layers))


def produce_latent_targets(request: Output, view: StepView) -> Tensor:
    """Targets ``y`` ``[C * B, N, D]`` at every patch position of the request's model's unmasked
    ``global`` crops (the loss keeps the masked ones).

    The plan puts into a backbone pass only the block indices of requests of kind ``blocks``, so a
    loss using this kind must also request ``Output("blocks", model=..., blocks=(-K, ..., -1))`` on
    the same pass (see :class:`sslkit_latent_mim.loss.LatentMIMLoss`).
    """
    options = LatentTargetOptions(**dict(request.options))
    if request.crops != "global" or request.masking not in ("none", "default"):
        raise ValueError(f"{request.describe()}: latent targets are computed on the unmasked global crops "
                         "(crops='global', masking='none')")
    backbone = view.module(request.model, "backbone")
    indices = top_block_indices(int(getattr(backbone, "num_layers", 0)), options.top_k)
    out = view.backbone_pass(request.model, "global", "none")
    missing = [i for i in indices if i not in out.blocks]
    if missing:
        raise ValueError(f"{request.describe()}: the backbone pass holds blocks {sorted(out.blocks)}, not "
                         f"{missing}; request Output('blocks', model={request.model!r}, "
                         f"blocks={tuple(i - len(indices) for i in range(len(indices)))}) next to it")
    return latent_targets([out.blocks[i] for i in indices], options.block_norm, options.target_norm)
