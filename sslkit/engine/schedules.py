"""The engine's per-step schedules (DINOv2, Oquab et al. 2023, appendix "training details"), pure
functions of the step. (Schedules of component parameters are :mod:`sslkit.recipe.param_schedule`.)

They reproduce DINOv2's ``CosineScheduler`` step by step (Oquab et al., 2023, training code): a
warm-up of ``W`` steps that goes linearly from its start value at step 0 to the base value at
step ``W - 1`` (the points of ``linspace(start, base, W)``), then a half-cosine from the base
value to the final value over the remaining ``T - W`` steps, evaluated at ``i = 0 .. T - W - 1``
steps after the warm-up, and the final value from step ``T`` on.

- lr: warm-up from 0 to the peak, then cosine to ``min_lr``.
- weight decay: cosine from ``start`` to ``end`` over the run (no warm-up).
- EMA momentum: cosine from ``start`` to ``end`` (1.0) over the run (no warm-up).
"""

from __future__ import annotations

import math
from dataclasses import dataclass


def cosine(step: int, total: int, start: float, end: float) -> float:
    """Half-cosine from ``start`` (step 0) to ``end`` (step ``total``), constant afterwards:
    ``end + (start - end) * (1 + cos(pi * step / total)) / 2``."""
    if total <= 0:
        return end
    progress = min(max(step / total, 0.0), 1.0)
    return end + 0.5 * (start - end) * (1.0 + math.cos(math.pi * progress))


def linspace_warmup(step: int, warmup: int, start: float, end: float) -> float:
    """Point ``step`` of ``linspace(start, end, warmup)``: ``start`` at step 0, ``end`` at step
    ``warmup - 1`` (``start`` alone when ``warmup == 1``); ``end`` from step ``warmup`` on."""
    if warmup <= 0 or step >= warmup:
        return end
    if warmup == 1:
        return start
    return start + (end - start) * max(step, 0) / (warmup - 1)


@dataclass(frozen=True)
class Schedules:
    """All schedules of a run, evaluated at a step by its methods."""

    max_steps: int
    peak_lr: float
    min_lr: float
    warmup_steps: int
    wd_start: float
    wd_end: float
    momentum_start: float
    momentum_end: float

    def lr(self, step: int) -> float:
        """Warm-up from 0 to ``peak_lr`` over ``warmup_steps``, then cosine to ``min_lr`` at ``max_steps``."""
        if step < self.warmup_steps:
            return linspace_warmup(step, self.warmup_steps, 0.0, self.peak_lr)
        return cosine(step - self.warmup_steps, self.max_steps - self.warmup_steps, self.peak_lr, self.min_lr)

    def weight_decay(self, step: int) -> float:
        return cosine(step, self.max_steps, self.wd_start, self.wd_end)

    def momentum(self, step: int) -> float:
        return cosine(step, self.max_steps, self.momentum_start, self.momentum_end)


def peak_lr(base_lr: float, global_batch: int, reference_batch: int, scaling: str) -> float:
    """lr = base_lr * (global_batch / reference_batch) ** p with p = 0.5 (sqrt), 1 (linear), 0 (none)."""
    power = {"sqrt": 0.5, "linear": 1.0, "none": 0.0}[scaling]
    return base_lr * math.pow(global_batch / reference_batch, power)
