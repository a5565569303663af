"""Schedules against their formulas (reference sections 3 and 6)."""

from __future__ import annotations

import math

import pytest

from sslkit.engine.schedules import Schedules, cosine, linear_warmup, peak_lr


def _schedules(**kw: float) -> Schedules:
    values = dict(max_steps=1000, peak_lr=1e-3, min_lr=1e-6, warmup_steps=100, wd_start=0.04, wd_end=0.4,
                  momentum_start=0.992, momentum_end=1.0, temp_start=0.04, temp_end=0.07, temp_warmup_steps=300,
                  freeze_last_layer_steps=50)
    values.update(kw)
    return Schedules(**values)


def test_lr_warms_up_linearly_then_follows_a_cosine_to_min_lr() -> None:
    s = _schedules()
    assert s.lr(0) == 0.0
    assert s.lr(50) == pytest.approx(0.5e-3)
    assert s.lr(100) == pytest.approx(1e-3)
    mid = 100 + 450
    assert s.lr(mid) == pytest.approx(1e-6 + 0.5 * (1e-3 - 1e-6))
    assert s.lr(1000) == pytest.approx(1e-6)


def test_weight_decay_and_momentum_are_cosines_over_the_run() -> None:
    s = _schedules()
    assert s.weight_decay(0) == pytest.approx(0.04)
    assert s.weight_decay(250) == pytest.approx(0.4 + 0.5 * (0.04 - 0.4) * (1 + math.cos(math.pi / 4)))
    assert s.weight_decay(1000) == pytest.approx(0.4)
    assert s.momentum(0) == pytest.approx(0.992)
    assert s.momentum(500) == pytest.approx(0.996)
    assert s.momentum(1000) == pytest.approx(1.0)


def test_teacher_temperature_warms_up_then_stays() -> None:
    s = _schedules()
    assert s.teacher_temp(0) == pytest.approx(0.04)
    assert s.teacher_temp(150) == pytest.approx(0.055)
    assert s.teacher_temp(300) == s.teacher_temp(999) == pytest.approx(0.07)


def test_last_layer_is_frozen_for_the_first_steps_only() -> None:
    s = _schedules()
    assert s.last_layer_frozen(49) and not s.last_layer_frozen(50)


def test_peak_lr_scaling_rules() -> None:
    assert peak_lr(0.004, 1024, 1024, "sqrt") == pytest.approx(0.004)
    assert peak_lr(0.004, 256, 1024, "sqrt") == pytest.approx(0.002)
    assert peak_lr(0.004, 256, 1024, "linear") == pytest.approx(0.001)
    assert peak_lr(0.004, 256, 1024, "none") == pytest.approx(0.004)


def test_helpers_clamp_outside_their_range() -> None:
    assert cosine(2000, 1000, 1.0, 0.0) == pytest.approx(0.0)
    assert linear_warmup(10, 0, 1.0, 2.0) == 2.0
