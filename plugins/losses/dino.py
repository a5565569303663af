"""The DINO self-distillation loss on CLS tokens (Caron et al. 2021, section 3.1, eq. 3; as in DINOv2,
Oquab et al. 2023, section 4).

Teacher targets ``p_t`` come from the teacher's head outputs on the global crops
(:mod:`sslkit_plugins.losses.teacher_targets`: centering or Sinkhorn-Knopp at the loss's
``teacher_temp``, which recipes schedule: DINOv2 warms it up from 0.04 to 0.07 over 30 epochs,
``teacher_temp: {schedule: linear, start: 0.04, end: 0.07, length: 30, unit: epochs}``); the student
predicts ``log_softmax(s / student_temp)`` on every crop.
The loss is the cross-entropy ``-sum_k p_t[k] log p_s[k]`` averaged over the images and over
every (teacher global crop, student crop) pair except the pairs of a crop with itself:
``n_global * (n_global - 1)`` global pairs + ``n_global * n_local`` local pairs, each pair
weighted equally (2 + 16 = 18 pairs with 2 global and 8 local crops).

Distributed runs: every process holds the same number of images, so the mean over this
process's images is its share of the global-batch mean (DDP averages the gradients); the
center update and Sinkhorn-Knopp reduce over the global batch.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from sslkit.components import BuildContext, Output, StepContext, StepInputs
from sslkit.params import param
from sslkit_plugins.losses.teacher_targets import Normalization, TeacherTargetLoss


@dataclass
class DINOLossParams:
    """Parameters of the ``dino`` loss."""

    head: str = param("dino", "Name of the head (under model.heads) applied to the CLS tokens.")
    student_temp: float = param(0.1, "Temperature of the student's softmax.", gt=0.0)
    teacher_temp: float = param(
        0.07,
        "Temperature of the teacher targets (0.07: DINOv2's value after its warm-up; schedule it in the recipe, "
        "e.g. {schedule: linear, start: 0.04, end: 0.07, length: 30, unit: epochs}).",
        gt=0.0,
    )
    center_momentum: float = param(
        0.9, "EMA momentum of the teacher center (normalization: centering).", ge=0.0, le=1.0
    )
    normalization: Normalization = param(
        "centering",
        "How teacher logits become targets: 'centering' (softmax of centred logits, EMA center) or "
        "'sinkhorn_knopp' (Sinkhorn-Knopp over the global batch).",
    )
    sinkhorn_iterations: int = param(3, "Sinkhorn-Knopp iterations (normalization: sinkhorn_knopp).", ge=1)
    use_local_crops: bool = param(True, "Also train the local crops' CLS tokens against the teacher's global crops.")


def cross_view_loss(teacher_probs: Tensor, student_log_probs: Tensor) -> Tensor:
    """Mean cross-entropy over images and over (teacher crop i, student crop j) pairs with ``j != i``.

    ``teacher_probs``: ``[n_global, B, K]``; ``student_log_probs``: ``[n_student, B, K]`` with the
    global crops first (student crop ``i < n_global`` is the same view as teacher crop ``i``).
    The sum over all pairs is ``(sum_i p_i) . (sum_j log q_j)`` minus the same-view terms.
    """
    n_global, batch = teacher_probs.shape[:2]
    n_student = student_log_probs.shape[0]
    all_pairs = (teacher_probs.sum(dim=0) * student_log_probs.sum(dim=0)).sum()
    same_view = (teacher_probs * student_log_probs[:n_global]).sum()
    n_pairs = n_global * (n_student - 1)
    return -(all_pairs - same_view) / (n_pairs * batch)


class DINOLoss(TeacherTargetLoss):
    """DINO loss: cross-entropy between teacher global-crop targets and student predictions on
    every other crop, averaged over images and crop pairs (same-view pairs excluded).

    Inputs: ``teacher``, the teacher's global-crop CLS tokens through ``head`` (``[n_global * B, K]``),
    and ``student``, the student's CLS tokens through ``head`` on the global crops, then the local
    crops when ``use_local_crops`` (``[n_student * B, K]``). The center is a ``[1, K]`` buffer sized
    from ``ctx.head_dims[head]`` (checkpointed with the loss). Diagnostics: see
    :class:`~sslkit_plugins.losses.teacher_targets.TeacherTargetLoss`.
    """

    def __init__(self, params: DINOLossParams, ctx: BuildContext) -> None:
        super().__init__("dino", params, ctx)
        self.params = params
        heads = (params.head,)
        self.inputs = {
            "student": Output("cls", model="student", crops="all" if params.use_local_crops else "global",
                              heads=heads),
            "teacher": Output("cls", model="teacher", crops="global", heads=heads),
        }
        n_student = ctx.n_global_crops + (ctx.n_local_crops if params.use_local_crops else 0)
        if n_student < 2:
            raise ValueError(
                f"the dino loss needs at least two crops per image to compare (got {ctx.n_global_crops} global "
                f"and {ctx.n_local_crops if params.use_local_crops else 0} local crops used)"
            )

    def forward(self, inputs: StepInputs, ctx: StepContext) -> Tensor:
        p = self.params
        teacher, student = inputs["teacher"], inputs["student"]
        batch = ctx.batch_size
        n_student = ctx.n_global + (ctx.n_local if p.use_local_crops else 0)
        if teacher.shape[0] != ctx.n_global * batch or student.shape[0] != n_student * batch:
            raise ValueError(
                f"dino loss: expected {ctx.n_global * batch} teacher rows and {n_student * batch} "
                f"student rows (n_global={ctx.n_global}, n_local={ctx.n_local}, batch_size={batch}, "
                f"use_local_crops={p.use_local_crops}), got {teacher.shape[0]} and {student.shape[0]}"
            )
        probs = self.targets(teacher, ctx)
        log_probs = torch.log_softmax(student.float() / p.student_temp, dim=-1)
        k = probs.shape[-1]
        return cross_view_loss(probs.view(ctx.n_global, batch, k), log_probs.view(n_student, batch, k))
