"""The engine's schedules against DINOv2's ``CosineScheduler`` formula, step by step."""

from __future__ import annotations

import numpy as np
import pytest

from sslkit.engine.schedules import Schedules, cosine, linspace_warmup, peak_lr


def _official(base: float, final: float, total: int, warmup: int = 0, start: float = 0.0) -> list[float]:
    """DINOv2's schedule as a formula: ``linspace(start, base, warmup)`` then
    ``final + (base - final) * (1 + cos(pi * i / n)) / 2`` for ``i = 0 .. n - 1`` with ``n = total - warmup``."""
    i = np.arange(total - warmup)
    tail = final + 0.5 * (base - final) * (1 + np.cos(np.pi * i / max(len(i), 1)))
    return np.concatenate([np.linspace(start, base, warmup), tail]).tolist()


def _at(schedule: list[float], step: int, final: float) -> float:
    """The official schedule's value at ``step`` (the final value past its end)."""
    return schedule[step] if step < len(schedule) else final


def _schedules(**kw: float) -> Schedules:
    values = dict(max_steps=40, peak_lr=1e-3, min_lr=1e-6, warmup_steps=7, wd_start=0.04, wd_end=0.4,
                  momentum_start=0.992, momentum_end=1.0)
    values.update(kw)
    return Schedules(**values)


@pytest.mark.parametrize(("max_steps", "warmup_steps"), [(40, 7), (40, 1), (40, 0), (25, 24)])
def test_lr_equals_the_official_schedule_at_every_step(max_steps: int, warmup_steps: int) -> None:
    s = _schedules(max_steps=max_steps, warmup_steps=warmup_steps)
    official = _official(1e-3, 1e-6, max_steps, warmup_steps, start=0.0)
    for step in range(max_steps + 3):
        assert s.lr(step) == pytest.approx(_at(official, step, 1e-6), rel=1e-12, abs=1e-15), step


def test_lr_reaches_the_peak_at_the_last_warmup_step() -> None:
    s = _schedules()
    assert s.lr(0) == 0.0
    assert s.lr(6) == pytest.approx(1e-3)  # step warmup - 1, as linspace(0, peak, warmup) ends
    assert s.lr(7) == pytest.approx(1e-3)  # first cosine step, i = 0
    assert s.lr(3) == pytest.approx(0.5e-3)


def test_weight_decay_and_momentum_equal_the_official_cosines_at_every_step() -> None:
    s = _schedules()
    wd = _official(0.04, 0.4, 40)
    momentum = _official(0.992, 1.0, 40)
    for step in range(45):
        assert s.weight_decay(step) == pytest.approx(_at(wd, step, 0.4), rel=1e-12), step
        assert s.momentum(step) == pytest.approx(_at(momentum, step, 1.0), rel=1e-12), step


def test_peak_lr_scaling_rules() -> None:
    assert peak_lr(0.004, 1024, 1024, "sqrt") == pytest.approx(0.004)
    assert peak_lr(0.004, 256, 1024, "sqrt") == pytest.approx(0.002)
    assert peak_lr(0.004, 256, 1024, "linear") == pytest.approx(0.001)
    assert peak_lr(0.004, 256, 1024, "none") == pytest.approx(0.004)


def test_helpers_clamp_outside_their_range() -> None:
    assert cosine(2000, 1000, 1.0, 0.0) == pytest.approx(0.0)
    assert linspace_warmup(10, 0, 1.0, 2.0) == 2.0
    assert linspace_warmup(10, 5, 1.0, 2.0) == 2.0
