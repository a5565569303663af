"""Teacher target distributions for the DINO and iBOT losses (DINO, Caron et al. 2021, section 3.1;
Sinkhorn-Knopp as in SwAV, Caron et al. 2020, section 3.1, and DINOv2, Oquab et al. 2023, section 5).

Two normalisations of the teacher logits ``t`` (``[M, K]``) at temperature ``T`` (the loss's
``teacher_temp`` parameter, which a recipe may schedule: read at every forward):

- ``centering``: ``softmax((t - c) / T)`` with the current center ``c``; then
  ``c <- m * c + (1 - m) * mean(t)``, the mean taken over every row of the global batch
  (sum and row count all-reduced, so the update does not depend on the number of processes).
  The new center is pending until the engine commits the step (:meth:`sslkit.components.Loss.commit`),
  so a skipped step (e.g. NaN teacher logits) leaves the center as it was.
- ``sinkhorn_knopp``: :func:`sslkit_plugins.losses.sinkhorn_knopp.sinkhorn_knopp` (no state).

:class:`TeacherTargetLoss` is the common base of the losses that distil such targets.
"""

from __future__ import annotations

from typing import Literal, Protocol

import torch
from torch import Tensor

from sslkit import distributed
from sslkit.components import BuildContext, Loss, StepContext
from sslkit_plugins.losses.sinkhorn_knopp import sinkhorn_knopp
from sslkit_plugins.losses.target_health import target_health

Normalization = Literal["centering", "sinkhorn_knopp"]


def center_buffer(loss: str, head: str, normalization: Normalization, ctx: BuildContext) -> Tensor | None:
    """A zero center ``[1, K]`` for ``centering`` (K from ``ctx.head_dims[head]``), ``None`` otherwise."""
    if normalization != "centering":
        return None
    if head not in ctx.head_dims:
        raise ValueError(
            f"the {loss} loss needs the output size of head {head!r} for its center "
            f"(BuildContext.head_dims has {sorted(ctx.head_dims) or 'no heads'})"
        )
    return torch.zeros(1, ctx.head_dims[head])


@torch.no_grad()
def updated_center(center: Tensor, teacher_logits: Tensor, momentum: float) -> Tensor:
    """The EMA update of ``center`` (``[1, K]``) with the global-batch mean of ``teacher_logits``, as a
    new tensor (``center`` is not modified); every process must call it together (one all-reduce).

    Equal to ``center`` when the global batch has no rows (e.g. no masked token anywhere), without
    a host-device sync.
    """
    t = teacher_logits.detach().float()
    stats = torch.cat([t.sum(dim=0), t.new_tensor([float(t.shape[0])])])
    distributed.all_reduce_sum(stats)
    total, count = stats[:-1], stats[-1]
    batch_center = (total / count.clamp_min(1.0)).unsqueeze(0)
    updated = center * momentum + batch_center.to(center.dtype) * (1.0 - momentum)
    return torch.where(count > 0, updated, center)


@torch.no_grad()
def teacher_probabilities(
    teacher_logits: Tensor,
    temperature: float,
    normalization: Normalization,
    center: Tensor | None = None,
    sinkhorn_iterations: int = 3,
) -> Tensor:
    """Targets ``[M, K]`` (float32, rows summing to 1), no gradient; ``center`` is only read.

    With ``sinkhorn_knopp`` every process must call this together (collectives), even with ``M == 0``.
    """
    if normalization == "sinkhorn_knopp":
        return sinkhorn_knopp(teacher_logits, temperature, sinkhorn_iterations)
    if center is None:
        raise ValueError("centering needs a center buffer")
    return torch.softmax((teacher_logits.detach().float() - center.float()) / temperature, dim=-1)


class TeacherTargetSettings(Protocol):
    """The parameters a :class:`TeacherTargetLoss` reads (fields of the ``dino`` / ``ibot`` params)."""

    head: str
    teacher_temp: float
    normalization: Normalization
    center_momentum: float
    sinkhorn_iterations: int


class TeacherTargetLoss(Loss):
    """Base of the losses that distil normalised teacher targets (``dino``, ``ibot``).

    Holds the center buffer (``[1, K]`` for ``centering``, checkpointed with the loss) and
    turns teacher logits into targets with :func:`teacher_probabilities`. The center update of a
    step is computed in ``forward`` (:func:`updated_center`) and copied into the buffer by
    :meth:`commit`, which the engine calls only for applied steps. Diagnostics, computed on
    logging steps only: the health of the targets (:mod:`sslkit_plugins.losses.target_health`:
    ``teacher_entropy``, ``entropy_gap``, ``target_usage``, ``target_coverage``) and, with
    centering, ``center_norm``.
    """

    center: Tensor | None  # a buffer (None without centering)

    def __init__(self, loss: str, settings: TeacherTargetSettings, ctx: BuildContext) -> None:
        super().__init__()
        self.settings = settings
        self.register_buffer("center", center_buffer(loss, settings.head, settings.normalization, ctx))
        self._pending_center: Tensor | None = None
        self._health: dict[str, Tensor] = {}

    def targets(self, teacher_logits: Tensor, ctx: StepContext) -> Tensor:
        """Teacher targets at this step's ``teacher_temp`` (the center update stays pending); on
        logging steps, records their health."""
        s = self.settings
        probs = teacher_probabilities(teacher_logits, s.teacher_temp, s.normalization, self.center,
                                      s.sinkhorn_iterations)
        if self.center is not None:
            self._pending_center = updated_center(self.center, teacher_logits, s.center_momentum)
        if ctx.logging_step:
            self._health = target_health(probs)
        return probs

    def commit(self) -> None:
        """The step is applied: its center update becomes the center."""
        if self._pending_center is not None and self.center is not None:
            self.center.copy_(self._pending_center)
            self._pending_center = None

    def diagnostics(self) -> dict[str, float | Tensor]:
        found: dict[str, float | Tensor] = dict(self._health)
        if self.center is not None:
            found["center_norm"] = self.center.detach().norm()
        return found
