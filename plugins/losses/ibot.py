"""The iBOT masked-token loss (Zhou et al. 2022, section 3.2, eq. 2; weighted per crop as in DINOv2,
Oquab et al. 2023, section 4).

For every masked patch token of a student global crop, the cross-entropy between the teacher's
target for the same crop and position (the teacher saw the crop unmasked) and the student's
``log_softmax(s / student_temp)``. Token ``i`` of crop ``c`` is weighted ``1 / m_c`` (``m_c``:
masked tokens of crop ``c``), so that every masked crop counts the same whatever its mask
ratio; the weighted sum is divided by the number of global crops of this process
(``n_global * B``, masked or not):

    loss = (1 / (n_global * B)) * sum_c sum_{i masked in c} CE(p_t[c, i], p_s[c, i]) / m_c

Distributed runs: each process divides by its own crop count, so the mean of the
per-process losses (what DDP's gradient averaging optimises) is the global-batch loss; the
center (over masked teacher logits) and Sinkhorn-Knopp (over all masked tokens) reduce over
the global batch. Without any masked token the loss is 0, still connected to the graph.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from sslkit.components import BuildContext, Output, StepContext, StepInputs
from sslkit.params import param
from sslkit_plugins.losses.teacher_targets import Normalization, TeacherTargetLoss


@dataclass
class IBOTLossParams:
    """Parameters of the ``ibot`` loss."""

    head: str = param(
        "ibot",
        "Name of the head (under model.heads) applied to the masked patch tokens; 'dino' shares the DINO head.",
    )
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
        "How teacher logits become targets: 'centering' (softmax of centred logits, EMA center over the "
        "masked tokens) or 'sinkhorn_knopp' (over all masked tokens of the global batch).",
    )
    sinkhorn_iterations: int = param(3, "Sinkhorn-Knopp iterations (normalization: sinkhorn_knopp).", ge=1)


def per_token_weights(masks: Tensor, n_tokens: int) -> Tensor:
    """``1 / m_c`` for every masked token, in ``masks.nonzero()`` order (``masks``: ``[crops, N]``)."""
    counts = masks.sum(dim=-1)
    token_counts = torch.repeat_interleave(counts, counts, output_size=n_tokens)
    return 1.0 / token_counts.float()


class IBOTLoss(TeacherTargetLoss):
    """iBOT loss: per-masked-token cross-entropy to the teacher, each token weighted by
    1 / (masked tokens of its crop), summed and divided by the number of global crops.

    Inputs: ``student`` and ``teacher``, the masked patch tokens of the global crops through
    ``head`` (``[M, K]``, ``masks.nonzero()`` order; the student saw the mask token there, the
    teacher the unmasked crop), and ``masks`` (``[n_global * B, N]``). Diagnostics: see
    :class:`~sslkit_plugins.losses.teacher_targets.TeacherTargetLoss`.
    """

    def __init__(self, params: IBOTLossParams, ctx: BuildContext) -> None:
        super().__init__("ibot", params, ctx)
        self.params = params
        heads = (params.head,)
        self.inputs = {
            "student": Output("patches", model="student", positions="masked", heads=heads),
            "teacher": Output("patches", model="teacher", positions="masked", heads=heads),
            "masks": Output("masks"),
        }

    def forward(self, inputs: StepInputs, ctx: StepContext) -> Tensor:
        p = self.params
        student, teacher, masks = inputs["student"], inputs["teacher"], inputs["masks"]
        if student.shape != teacher.shape:
            raise ValueError(
                f"ibot loss: student and teacher masked logits differ in shape: "
                f"{tuple(student.shape)} vs {tuple(teacher.shape)}"
            )
        probs = self.targets(teacher, ctx)
        log_probs = torch.log_softmax(student.float() / p.student_temp, dim=-1)
        token_losses = -(probs * log_probs).sum(dim=-1)
        weights = per_token_weights(masks, student.shape[0])
        return (token_losses * weights).sum() / masks.shape[0]
