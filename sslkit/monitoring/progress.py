"""Console progress for training and evaluation loops.

On a terminal, one line is redrawn in place (``\\r``); elsewhere (log files, CI, ``torchrun``
pipes) plain lines are printed at most every ``every_s`` seconds and at every ``log_every``-th
step, so logs stay short. A line reads::

    train 1200/10000 (12%) | 812.4 img/s | 3.21 it/s | ETA 0:45:42 | loss 6.913 lr 0.0004

Rates are measured over a sliding window of recent updates, so a slow first step (compilation,
loader start-up) does not distort them for long.
"""

from __future__ import annotations

import shutil
import sys
import time
from collections import deque
from collections.abc import Callable, Mapping
from types import TracebackType
from typing import TextIO


def format_duration(seconds: float) -> str:
    """``H:MM:SS`` (with a ``Nd`` prefix beyond a day)."""
    whole = max(0, round(seconds))
    days, rest = divmod(whole, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    text = f"{hours}:{minutes:02d}:{secs:02d}"
    return f"{days}d {text}" if days else text


class Progress:
    """Progress of a loop of ``total_steps`` steps, resumed at ``start_step``.

    ``update(step, images, metrics)`` reports that ``step`` steps are done in total and that
    ``images`` images were processed since the previous update; ``metrics`` (e.g. ``loss``)
    are shown as given. ``is_tty`` defaults to ``stream.isatty()``. ``clock`` returns seconds
    (injectable for tests). Usable as a context manager (``close()`` on exit).
    """

    def __init__(
        self,
        total_steps: int,
        start_step: int = 0,
        stream: TextIO = sys.stderr,
        every_s: float = 30.0,
        is_tty: bool | None = None,
        *,
        log_every: int | None = None,
        desc: str = "train",
        refresh_s: float = 0.2,
        window: int = 50,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if total_steps < 1 or not 0 <= start_step <= total_steps:
            raise ValueError(
                f"need total_steps >= 1 and 0 <= start_step <= total_steps, got {total_steps} and {start_step}"
            )
        self.total_steps = total_steps
        self.stream = stream
        self.every_s = every_s
        self.is_tty = stream.isatty() if is_tty is None else is_tty
        self.log_every = log_every
        self.desc = desc
        self.refresh_s = refresh_s
        self.clock = clock
        self._images = 0
        self._start = clock()
        self._samples: deque[tuple[float, int, int]] = deque([(self._start, start_step, 0)], maxlen=window + 1)
        self._last_print: float | None = None
        self._pending: str | None = None  # latest line not yet shown
        self._drawn = 0  # width of the line currently on a terminal
        self._closed = False

    def rates(self) -> tuple[float | None, float | None]:
        """``(steps/s, images/s)`` over the window (``None`` until time has passed)."""
        (t0, step0, images0), (t1, step1, images1) = self._samples[0], self._samples[-1]
        if t1 <= t0:
            return None, None
        return (step1 - step0) / (t1 - t0), (images1 - images0) / (t1 - t0)

    def line(self, metrics: Mapping[str, float] | None = None) -> str:
        """The progress line for the latest update."""
        step = self._samples[-1][1]
        steps_per_s, images_per_s = self.rates()
        parts = [f"{self.desc} {step}/{self.total_steps} ({100.0 * step / self.total_steps:.0f}%)"]
        parts.append("-- img/s" if images_per_s is None else f"{images_per_s:.1f} img/s")
        parts.append("-- it/s" if steps_per_s is None else f"{steps_per_s:.2f} it/s")
        if step >= self.total_steps:
            parts.append(f"done in {format_duration(self._samples[-1][0] - self._start)}")
        elif steps_per_s:
            parts.append(f"ETA {format_duration((self.total_steps - step) / steps_per_s)}")
        else:
            parts.append("ETA --")
        if metrics:
            parts.append(" ".join(f"{name} {float(value):.4g}" for name, value in metrics.items()))
        return " | ".join(parts)

    def update(self, step: int, images: int = 0, metrics: Mapping[str, float] | None = None) -> None:
        """Record progress and print when due (see the module docstring)."""
        if self._closed:
            raise RuntimeError("update() after close()")
        now = self.clock()
        self._images += images
        self._samples.append((now, step, self._images))
        text = self.line(metrics)
        finished = step >= self.total_steps
        if self.is_tty:
            due = finished or self._last_print is None or now - self._last_print >= self.refresh_s
        else:
            periodic = self.log_every is not None and step % self.log_every == 0
            due = finished or periodic or self._last_print is None or now - self._last_print >= self.every_s
        if due:
            self._show(text)
            self._last_print = now
        else:
            self._pending = text

    def _show(self, text: str) -> None:
        self._pending = None
        if self.is_tty:
            width = shutil.get_terminal_size(fallback=(120, 24)).columns - 1
            text = text[:width]
            self.stream.write("\r" + text + " " * max(0, self._drawn - len(text)))
            self._drawn = len(text)
        else:
            self.stream.write(text + "\n")
        self.stream.flush()

    def close(self) -> None:
        """Show the latest line if it was not shown yet and end the terminal line (idempotent)."""
        if self._closed:
            return
        self._closed = True
        if self._pending is not None:
            self._show(self._pending)
        if self.is_tty and self._drawn:
            self.stream.write("\n")
            self.stream.flush()

    def __enter__(self) -> Progress:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
