"""Step-time breakdown: ``time/<phase>`` scalars on logging steps, nothing on the others."""

from __future__ import annotations

import time

import torch

from sslkit.engine.step_timer import PHASES, StepTimer
from sslkit.engine.trainer import Trainer
from sslkit.recipe import load_recipe


def test_a_timed_step_reports_each_phase_in_milliseconds() -> None:
    timer = StepTimer(torch.device("cpu"))
    timer.begin(True)
    with timer.phase("backward"):
        time.sleep(0.02)
    with timer.phase("ema"):
        pass
    with timer.phase("backward"):  # a phase entered twice adds up
        time.sleep(0.01)
    values = timer.take()
    assert set(values) == {"time/backward", "time/ema"}
    assert 30.0 <= values["time/backward"] < 1000.0
    assert timer.take() == {}  # taking ends the timed step


def test_an_untimed_step_reads_no_clock_and_reports_nothing() -> None:
    timer = StepTimer(torch.device("cpu"))
    timer.begin(False)
    first, second = timer.phase("backward"), timer.phase("ema")
    assert first is second  # one shared no-op context: nothing is allocated, no clock read, no device sync
    with first:
        time.sleep(0.005)
    assert timer.take() == {}


def test_step_times_reach_tensorboard_on_logging_steps_only(tmp_path, quickstart, tiny_overrides) -> None:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    out = tmp_path / "run"
    overrides = [*tiny_overrides, "train.max_steps=4", "train.log_every=2"]
    trainer = Trainer(load_recipe(quickstart, overrides), out)
    trainer.fit()
    events = EventAccumulator(str(out))
    events.Reload()
    tags = set(events.Tags()["scalars"])
    for phase in PHASES:
        assert f"time/{phase}" in tags, phase
        steps = [e.step for e in events.Scalars(f"time/{phase}")]
        assert steps == [2, 4], (phase, steps)
    forward = events.Scalars("time/student_forward")
    assert all(e.value > 0.0 for e in forward)
    for step, timed in ((0, False), (1, True), (2, False), (3, True)):  # steps 0-based, logged after 2 and 4
        trainer.monitor.begin_step(step)
        assert trainer.monitor.timer.enabled is timed, step
