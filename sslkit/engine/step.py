"""One training step's forward and loss computation: teacher outputs, student outputs, losses,
and the decision every process takes together after them (apply or skip the step, stop or go on).

The split follows dinov3's training step: the engine composes the outputs once, every loss
plugin computes its term from them.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from sslkit import distributed
from sslkit.components import Crops, StepContext, StepOutputs
from sslkit.engine.model import Teacher
from sslkit.engine.plan import StepPlan
from sslkit.engine.step_timer import UNTIMED, StepTimer


def compute_outputs(student: nn.Module, teacher: Teacher, crops: Crops, masks: Tensor | None,
                    masked_crops: Tensor | None, plan: StepPlan, timer: StepTimer = UNTIMED) -> StepOutputs:
    """Run the teacher (no gradients) and the student once each and collect what losses need
    (``timer`` times the two passes on logging steps)."""
    with timer.phase("teacher_forward"):
        teacher_global, teacher_cls, teacher_patch = teacher(crops, masks, plan)
    with timer.phase("student_forward"):
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


@dataclass(frozen=True)
class StepDecision:
    """What every process agreed on after computing one step's loss terms."""

    nonfinite: tuple[str, ...]  # loss terms that are NaN or infinite on at least one process
    stop: bool  # at least one process received a stop signal (SIGTERM / SIGUSR1)


def agree(terms: dict[str, Tensor], stop_requested: bool) -> StepDecision:
    """Decide, identically on every process, whether the step is applied and whether the run stops.

    One MAX all-reduce of the flag vector ``[term_0 non-finite, ..., term_{n-1} non-finite,
    stop requested]`` (no collective in a single process) and one device sync: a NaN or a
    signal seen by one process makes every process skip the step or checkpoint and stop, so
    that no process enters a collective (gradient all-reduce, checkpoint gather) the others skip.
    """
    values = torch.stack(list(terms.values()))
    flags = torch.cat([(~torch.isfinite(values)).float(), values.new_tensor([float(stop_requested)])])
    agreed = distributed.all_reduce_max(flags).tolist()
    return StepDecision(nonfinite=tuple(name for name, bad in zip(terms, agreed[:-1], strict=True) if bad),
                        stop=bool(agreed[-1]))
