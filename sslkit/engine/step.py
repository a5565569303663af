"""One training step's forward and loss computation: teacher outputs, student outputs, losses.

The split follows dinov3's training step: the engine composes the outputs once, every loss
plugin computes its term from them.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from sslkit.components import Crops, StepContext, StepOutputs
from sslkit.engine.model import Teacher
from sslkit.engine.plan import StepPlan


def compute_outputs(student: nn.Module, teacher: Teacher, crops: Crops, masks: Tensor | None,
                    masked_crops: Tensor | None, plan: StepPlan) -> StepOutputs:
    """Run the teacher (no gradients) and the student once each and collect what losses need."""
    teacher_global, teacher_cls, teacher_patch = teacher(crops, masks, plan)
    student_global, student_local, student_cls, student_patch = student(crops, masks, plan)
    return StepOutputs(
        student_global=student_global,
        teacher_global=teacher_global,
        student_local=student_local,
        masks=masks,
        masked_crops=masked_crops,
        student_cls_logits=student_cls,
        teacher_cls_logits=teacher_cls,
        student_masked_logits=student_patch,
        teacher_masked_logits=teacher_patch,
        crops=crops,
    )


def compute_losses(losses: nn.ModuleDict, weights: dict[str, float], outputs: StepOutputs,
                   ctx: StepContext) -> tuple[Tensor, dict[str, Tensor]]:
    """Every loss term (unweighted, detached for logging) and the weighted total (with gradients)."""
    terms: dict[str, Tensor] = {}
    total: Tensor | None = None
    for name, loss in losses.items():
        value = loss(outputs, ctx)
        terms[name] = value.detach().float()
        weighted = value.float() * weights[name]
        total = weighted if total is None else total + weighted
    assert total is not None  # recipes have at least one loss (validated)
    return total, terms


def nonfinite_terms(terms: dict[str, Tensor]) -> list[str]:
    """Names of the loss terms that are NaN or infinite (one device sync for all of them)."""
    finite = torch.isfinite(torch.stack(list(terms.values()))).tolist()
    return [name for name, ok in zip(terms, finite, strict=True) if not ok]
