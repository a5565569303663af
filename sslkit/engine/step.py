"""One training step's forward and loss computation: teacher outputs, student outputs, losses,
and the decision every process takes together after them (apply or skip the step, stop or go on).

The split follows dinov3's training step: the engine composes the outputs once, every loss
plugin computes its term from them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from sslkit import distributed
from sslkit.components import StepContext
from sslkit.engine.plan import PassKey, StepPlan
from sslkit.engine.step_timer import UNTIMED, StepTimer
from sslkit.outputs import Output, Producer, StepInputs
from sslkit.step_data import BackboneOutput, Crops


@dataclass
class StepOutputs:
    """Everything the models computed in one step: the value of every planned request and the
    backbone passes that ran (the monitor reads the passes: CLS statistics, patch PCA images)."""

    values: dict[Output, Any]
    passes: dict[PassKey, BackboneOutput]

    def inputs_of(self, declared: Mapping[str, Output]) -> StepInputs:
        """One loss's inputs, by the names it declared (``declared``: its resolved requests)."""
        return StepInputs({name: self.values[request] for name, request in declared.items()})


def compute_outputs(student: nn.Module, teacher: nn.Module, crops: Crops, masks: Tensor | None,
                    masked_crops: Tensor | None, plan: StepPlan, producers: Mapping[str, Producer],
                    timer: StepTimer = UNTIMED) -> StepOutputs:
    """Run the teacher (no gradients; skipped when no loss asks for it) and the student once each
    (``timer`` times the two passes on logging steps)."""
    values: dict[Output, Any] = {}
    passes: dict[PassKey, BackboneOutput] = {}
    if plan.uses("teacher"):
        with timer.phase("teacher_forward"):
            teacher_values, teacher_passes = teacher(crops, masks, masked_crops, plan, producers)
        values.update(teacher_values)
        passes.update(teacher_passes)
    with timer.phase("student_forward"):
        student_values, student_passes = student(crops, masks, masked_crops, plan, producers)
    values.update(student_values)
    passes.update(student_passes)
    return StepOutputs(values, passes)


def compute_losses(losses: nn.ModuleDict, weights: Mapping[str, float], outputs: StepOutputs, plan: StepPlan,
                   ctx: StepContext) -> tuple[Tensor, dict[str, Tensor]]:
    """Every loss term (unweighted, detached for logging) and the weighted total (with gradients)."""
    terms: dict[str, Tensor] = {}
    total: Tensor | None = None
    for name, loss in losses.items():
        value = loss(outputs.inputs_of(plan.inputs[name]), ctx)
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
    #: every loss term and ``total``, averaged over processes: the global-batch loss that DDP's gradient
    #: averaging optimises, identical on every process (a single process: its own values)
    means: dict[str, Tensor]


def agree(terms: dict[str, Tensor], total: Tensor, stop_requested: bool) -> StepDecision:
    """Decide, identically on every process, whether the step is applied and whether the run stops,
    and average the loss terms over processes.

    One SUM all-reduce of ``[term_0, ..., term_{n-1}, total, term_0 non-finite, ..., term_{n-1}
    non-finite, stop requested]`` (no collective in a single process) and one device sync: a NaN or
    a signal seen by one process makes every process skip the step or checkpoint and stop, so that
    no process enters a collective (gradient all-reduce, checkpoint gather) the others skip; and
    what the run logs is the loss of the global batch (each process's loss covers its own share of
    it), not one process's share, so that a curve does not depend on the number of processes.
    """
    values = torch.stack([*terms.values(), total.detach().float()])
    flags = torch.cat([(~torch.isfinite(values[:-1])).float(), values.new_tensor([float(stop_requested)])])
    reduced = distributed.all_reduce_mean(torch.cat([values, flags]))
    n = len(values)
    agreed = reduced[n:].tolist()
    names = [*terms, "total"]
    return StepDecision(nonfinite=tuple(name for name, bad in zip(terms, agreed[:-1], strict=True) if bad > 0),
                        stop=agreed[-1] > 0, means={name: reduced[i] for i, name in enumerate(names)})
