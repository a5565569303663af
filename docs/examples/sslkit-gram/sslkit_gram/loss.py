"""The ``gram_anchoring`` loss: DINOv3's Gram anchoring (Siméoni et al. 2025, section 4).

Long DINOv2-style runs keep improving global features while their patch features get noisier.
Gram anchoring fixes this by asking the student's patch-similarity (Gram) matrix to stay close
to that of a *Gram teacher* whose dense features are still clean:

    loss = mean over compared pairs (i, j) of ( <s_i, s_j> - <g_i, g_j> )^2

with ``s`` the L2-normalised student patch features of the global crops (input ``student``,
``Output("patches")``) and ``g`` those of the Gram teacher on the same, unmasked crops (input
``images``, ``Output("images")``). See :mod:`sslkit_gram.gram` for the per-image and batch
forms, the token restriction and ``remove_negatives``.

The Gram teacher is either

- ``ema_refresh``: a frozen copy of the EMA teacher's backbone (input ``teacher_backbone``,
  ``Output("backbone", model="teacher")``)
  taken when the loss starts (``start_step``) and refreshed every ``refresh_every`` steps; or
- ``checkpoint``: a frozen earlier model read from ``checkpoint`` (see :mod:`sslkit_gram.weights`)
  into a copy of the teacher backbone's architecture.

The copy is a submodule (``gram_teacher``) with ``requires_grad`` off and always in eval mode,
so it is saved in every checkpoint with the step of its last refresh; a resumed run continues
with the same Gram teacher and refresh schedule as an uninterrupted one. A Gram teacher made or
refreshed in ``forward`` (which already uses it) becomes the loss's only in ``commit()``, which
the engine calls for applied steps (:class:`sslkit.components.Loss`): a step skipped for a
non-finite loss leaves the Gram teacher and ``last_refresh`` as they were.

Distributed runs: ``per_image`` divides the sum by the number of compared pairs of the whole
global batch (times the number of processes), so the mean of the per-process losses, which
DDP's gradient averaging optimises, is the global-batch loss whatever the number of
processes. ``batch`` compares the patches of each process's own batch (as DINOv3 does), so
its value depends on the per-process batch size.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any, Literal

import torch
from torch import Tensor, nn

from sslkit import distributed
from sslkit.components import BuildContext, Loss, Output, StepContext, StepInputs
from sslkit.params import param
from sslkit_gram.gram import GramMode, gram_squared_error
from sslkit_gram.weights import load_backbone_weights

_TEACHER_KEY = "gram_teacher."


@dataclass
class _PendingTeacher:
    """A Gram teacher made by ``forward``, and the refresh step it records (``None``: restored from
    a checkpoint, whose ``last_refresh`` stays); it becomes the loss's in ``commit``."""

    module: nn.Module
    refreshed: int | None


@dataclass
class GramAnchoringParams:
    """Parameters of the ``gram_anchoring`` loss."""

    teacher: Literal["ema_refresh", "checkpoint"] = param(
        "ema_refresh",
        "Gram teacher: 'ema_refresh' (a frozen copy of the EMA teacher, refreshed every refresh_every steps) "
        "or 'checkpoint' (the frozen model at `checkpoint`).")
    refresh_every: int = param(
        10000, "teacher ema_refresh: copy the EMA teacher into the Gram teacher every this many steps.", ge=1)
    checkpoint: str | None = param(
        None, "teacher checkpoint: an sslkit checkpoint file or run directory (its EMA teacher backbone), or a "
              ".safetensors file of the backbone's own state dict.")
    gram: GramMode = param(
        "per_image", "'per_image': an N x N Gram matrix per crop; 'batch': one matrix over all patches of the "
                     "per-process batch (memory grows with the square of the patch count).")
    tokens: Literal["all", "masked", "unmasked"] = param(
        "all", "Which student patch tokens are compared: all, only those the mask replaced, or only the others "
               "(masked / unmasked need the step's masks, which this loss then requests).")
    remove_negatives: bool = param(False, "Set negative similarities to zero in both Gram matrices.")
    start_step: int = param(
        0, "First step with Gram anchoring (DINOv3 adds it late in training); before it the loss is 0 "
           "(still connected to the graph) and no Gram teacher exists.", ge=0)


class GramAnchoringLoss(Loss):
    """Gram anchoring: MSE between the Gram matrices of the L2-normalised student patch features
    and those of a frozen Gram teacher (EMA snapshot refreshed every N steps, or a checkpoint).

    Inputs: ``student``, the student's patch tokens of the global crops ``[n_global * B, N, D]``;
    ``images``, the global crops (the Gram teacher's input); ``teacher_backbone``, the EMA
    teacher's backbone module (the architecture to copy and, for ``ema_refresh``, the weights);
    ``masks`` when ``tokens`` is not ``all``.
    A new Gram teacher is pending until :meth:`commit`. Diagnostics: ``refreshed_at`` (step of
    the last committed refresh) once active.
    """

    def __init__(self, params: GramAnchoringParams, ctx: BuildContext) -> None:
        super().__init__()
        if params.teacher == "checkpoint" and not params.checkpoint:
            raise ValueError("gram_anchoring: teacher 'checkpoint' needs `checkpoint` (a checkpoint or safetensors "
                             "path)")
        if params.teacher == "ema_refresh" and params.checkpoint:
            raise ValueError("gram_anchoring: `checkpoint` is only read with teacher 'checkpoint' (this loss uses "
                             "teacher 'ema_refresh')")
        self.params = params
        self.inputs = {
            "student": Output("patches", model="student", crops="global"),
            "images": Output("images", crops="global"),
            "teacher_backbone": Output("backbone", model="teacher"),
        }
        if params.tokens != "all":
            self.inputs["masks"] = Output("masks")
        self.gram_teacher: nn.Module | None = None
        self.register_buffer("last_refresh", torch.tensor(-1, dtype=torch.long))
        self._last_refresh: int | None = None  # host copy of the buffer (no device sync per step)
        self._file_weights = load_backbone_weights(params.checkpoint) if params.teacher == "checkpoint" else None
        self._restored_weights: dict[str, Tensor] | None = None
        self._pending: _PendingTeacher | None = None  # the Gram teacher made by the last forward, until commit

    # -- the Gram teacher -----------------------------------------------------------------
    def _load_into(self, module: nn.Module, weights: dict[str, Tensor], source: str) -> None:
        try:
            module.load_state_dict(weights)
        except RuntimeError as exc:
            raise ValueError(f"gram_anchoring: the Gram-teacher weights from {source} do not fit the teacher "
                             f"backbone's architecture: {str(exc).splitlines()[0]}") from None

    def gram_teacher_for(self, teacher_backbone: nn.Module, step: int) -> nn.Module:
        """The Gram teacher of step ``step``, without changing the loss's state (``teacher_backbone``:
        the EMA teacher's backbone, only read).

        On the first active step it is made (from the EMA teacher, the ``checkpoint`` file, or
        the resumed checkpoint's weights); with ``ema_refresh`` it is a new copy of the EMA
        teacher once ``refresh_every`` steps have passed since the last refresh. A new Gram
        teacher stays pending until :meth:`commit` (the step is applied): a skipped step keeps
        the previous one and its refresh step, and the next step decides again. Until then it
        costs one extra copy of the backbone.
        """
        self._pending = None
        if self._last_refresh is None:
            self._last_refresh = int(self.last_refresh)
        refresh_due = (self.params.teacher == "ema_refresh" and self._last_refresh >= 0
                       and step - self._last_refresh >= self.params.refresh_every)
        if self.gram_teacher is not None and not refresh_due:
            return self.gram_teacher
        module = copy.deepcopy(teacher_backbone).requires_grad_(False).eval()
        if refresh_due or (self._restored_weights is None and self._file_weights is None):
            self._pending = _PendingTeacher(module, step)  # a copy of the EMA teacher
        elif self._restored_weights is not None:
            self._load_into(module, self._restored_weights, "the resumed checkpoint")
            self._pending = _PendingTeacher(module, None)  # the restored last_refresh stays
        else:
            assert self._file_weights is not None
            self._load_into(module, self._file_weights, str(self.params.checkpoint))
            self._pending = _PendingTeacher(module, step)
        return self._pending.module

    def commit(self) -> None:
        """The step is applied: a Gram teacher made or refreshed by its forward becomes the loss's."""
        if self._pending is None:
            return
        self.gram_teacher = self._pending.module
        if self._pending.refreshed is not None:
            self.last_refresh.fill_(self._pending.refreshed)
            self._last_refresh = self._pending.refreshed
        self._restored_weights = self._file_weights = None
        self._pending = None

    def train(self, mode: bool = True) -> GramAnchoringLoss:
        """The Gram teacher stays in eval mode (no drop-path) whatever the student's mode."""
        super().train(mode)
        if self.gram_teacher is not None:
            self.gram_teacher.eval()
        return self

    def _load_from_state_dict(self, state_dict: dict[str, Any], prefix: str, *args: Any) -> None:
        """Accept a checkpoint's Gram teacher before the copy exists (on resume, the loss is built
        without one): its weights are kept and loaded into the copy made at the next step."""
        key = prefix + _TEACHER_KEY
        if self.gram_teacher is None:
            saved = {k[len(key):]: state_dict.pop(k) for k in [k for k in state_dict if k.startswith(key)]}
            self._restored_weights = saved or None
        self._last_refresh = None
        self._pending = None
        super()._load_from_state_dict(state_dict, prefix, *args)

    # -- the loss -------------------------------------------------------------------------
    def _tokens(self, inputs: StepInputs) -> Tensor | None:
        if self.params.tokens == "all":
            return None
        masks = inputs["masks"]
        return masks if self.params.tokens == "masked" else ~masks

    def forward(self, inputs: StepInputs, ctx: StepContext) -> Tensor:
        p = self.params
        student = inputs["student"]
        if ctx.step < p.start_step:
            return student.sum() * 0.0
        with torch.no_grad():
            gram_teacher = self.gram_teacher_for(inputs.module("teacher_backbone"), ctx.step)
            teacher = gram_teacher(inputs["images"]).patches
        squared_sum, count = gram_squared_error(student, teacher, self._tokens(inputs), p.gram, p.remove_negatives)
        if p.gram == "per_image":
            count = distributed.all_reduce_sum(count) / distributed.world_size()
        return squared_sum / count.clamp_min(1.0)  # no compared pair: 0, still connected to the graph

    def diagnostics(self) -> dict[str, float | Tensor]:
        if self._last_refresh is None or self._last_refresh < 0:
            return {}
        return {"refreshed_at": float(self._last_refresh)}
