"""Progress lines with a controlled clock: content, rates, ETA, throttling, TTY redraws."""

from __future__ import annotations

import io

import pytest

from sslkit.monitoring.progress import Progress, format_duration


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_format_duration() -> None:
    assert format_duration(0) == "0:00:00"
    assert format_duration(90) == "0:01:30"
    assert format_duration(3 * 3600 + 61.4) == "3:01:01"
    assert format_duration(2 * 86400 + 5) == "2d 0:00:05"


def test_plain_lines_show_step_throughput_eta_and_loss() -> None:
    clock, stream = Clock(), io.StringIO()
    progress = Progress(100, stream=stream, every_s=30.0, is_tty=False, clock=clock)
    for step in range(1, 11):
        clock.now += 0.5  # 2 steps/s, 64 images per step: 128 images/s
        progress.update(step, 64, {"loss": 2.5, "lr": 0.0004})
    clock.now += 30.0  # a slow step: the line is due again
    progress.update(11, 64, {"loss": 2.25})
    lines = stream.getvalue().splitlines()
    assert len(lines) == 2  # the first update, then nothing until every_s passed
    assert lines[0] == "train 1/100 (1%) | 128.0 img/s | 2.00 it/s | ETA 0:00:50 | loss 2.5 lr 0.0004"
    # Rates over the window: 11 steps, 704 images in 35 s; 89 steps left at 11/35 it/s.
    assert lines[1] == f"train 11/100 (11%) | 20.1 img/s | 0.31 it/s | ETA {format_duration(89 * 35 / 11)} | loss 2.25"


def test_log_every_and_the_final_step_always_print() -> None:
    clock, stream = Clock(), io.StringIO()
    with Progress(20, start_step=10, stream=stream, is_tty=False, log_every=5, desc="features", clock=clock) as p:
        for step in range(11, 21):
            clock.now += 1.0
            p.update(step, 8)
    lines = stream.getvalue().splitlines()
    assert [line.split(" | ")[0] for line in lines] == [
        "features 11/20 (55%)",
        "features 15/20 (75%)",
        "features 20/20 (100%)",
    ]
    assert lines[-1] == "features 20/20 (100%) | 8.0 img/s | 1.00 it/s | done in 0:00:10"


def test_close_prints_the_last_pending_line() -> None:
    clock, stream = Clock(), io.StringIO()
    progress = Progress(50, stream=stream, is_tty=False, clock=clock)
    for step in (1, 2, 3):
        clock.now += 1.0
        progress.update(step, 4, {"loss": float(step)})
    progress.close()
    progress.close()  # idempotent
    lines = stream.getvalue().splitlines()
    assert len(lines) == 2 and lines[-1].startswith("train 3/50 (6%)") and lines[-1].endswith("loss 3")
    with pytest.raises(RuntimeError):
        progress.update(4, 4)


def test_terminal_redraws_one_line_in_place() -> None:
    clock, stream = Clock(), io.StringIO()
    progress = Progress(3, stream=stream, is_tty=True, clock=clock)
    for step in (1, 2, 3):
        clock.now += 1.0
        progress.update(step, 2, {"loss": 1.0})
    assert "\n" not in stream.getvalue()
    draws = stream.getvalue().split("\r")[1:]
    assert len(draws) == 3 and draws[0].startswith("train 1/3 (33%)") and "ETA 0:00:02" in draws[0]
    assert draws[-1].startswith("train 3/3 (100%)") and "done in 0:00:03" in draws[-1]
    progress.close()
    assert stream.getvalue().endswith("\n")


def test_no_rate_before_time_passes() -> None:
    stream = io.StringIO()
    Progress(10, stream=stream, is_tty=False, clock=Clock()).update(1, 5)
    assert stream.getvalue() == "train 1/10 (10%) | -- img/s | -- it/s | ETA --\n"
