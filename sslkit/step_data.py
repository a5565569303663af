"""The tensors one step passes between the engine's stages: the multi-crop views of a batch
(:class:`Crops`) and what one backbone pass returns (:class:`BackboneOutput`)."""

from __future__ import annotations

from dataclasses import dataclass, field

from torch import Tensor


@dataclass
class Crops:
    """The multi-crop views of one (per-process) batch, crop-major, normalised float tensors."""

    global_crops: Tensor  # [n_global * B, 3, H, W]
    local_crops: Tensor | None  # [n_local * B, 3, h, w] or None when n_local == 0
    n_global: int
    n_local: int
    batch_size: int


@dataclass
class BackboneOutput:
    """One backbone pass: features after the final norm and, on request, intermediate block outputs.

    ``cls``: ``[M, D]``; ``patches``: ``[M, N, D]`` (``None`` for models without patch tokens);
    ``registers``: ``[M, R, D]`` or ``None``; ``blocks[i]``: the patch tokens ``[M, N, D]`` output
    by block ``i`` (before the final norm), for the block indices the pass was asked for. After a
    pass that dropped masked patches, the rows of dropped patches are zero in ``patches`` and
    ``blocks``.
    """

    cls: Tensor
    patches: Tensor | None = None
    registers: Tensor | None = None
    blocks: dict[int, Tensor] = field(default_factory=dict)
