"""Applying the recipe's parameter schedules (:mod:`sslkit.recipe.param_schedule`) every step.

Each scheduled component parameter is written into the parameter object the component was built
with (components read their parameters at ``forward`` time), each scheduled loss weight into the
engine's weights; :meth:`ParamSchedules.values` gives the logged ``schedule/<key>`` values.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sslkit.recipe.param_schedule import ParamSchedule


@dataclass(frozen=True)
class Binding:
    """Where one schedule writes: ``setattr(target, name, value)``, or ``target[name] = value`` for a dict."""

    key: str  # the recipe key, e.g. "losses.dino.teacher_temp"
    schedule: ParamSchedule
    target: Any
    name: str


class ParamSchedules:
    """Every scheduled parameter of a run."""

    def __init__(self, bindings: list[Binding], epoch_length: int, max_steps: int) -> None:
        self.bindings = bindings
        self.epoch_length = epoch_length
        self.max_steps = max_steps

    def values(self, step: int) -> dict[str, float]:
        return {b.key: b.schedule.value(step, self.epoch_length, self.max_steps) for b in self.bindings}

    def apply(self, step: int) -> None:
        """Write the values of ``step`` into the components' parameters and the loss weights."""
        for b in self.bindings:
            value = b.schedule.value(step, self.epoch_length, self.max_steps)
            if isinstance(b.target, dict):
                b.target[b.name] = value
            else:
                setattr(b.target, b.name, value)
