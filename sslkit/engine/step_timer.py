"""Where a training step's time goes: wall-clock time per phase, measured on logging steps only.

The trainer opens one phase per stage of the step (data wait, augmentation, masking, teacher
forward, student forward, losses, backward, optimizer, EMA); the monitor writes them as
``time/<phase>`` scalars in milliseconds. On any other step :meth:`StepTimer.phase` returns one
shared no-op context: no clock is read and the device is never synchronised, so the timer
costs nothing there. On a timed step a CUDA device is synchronised at both ends of every phase,
so that each phase holds its own kernels rather than those queued before it (this serialises
that one step a little; the other steps run as usual).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from contextlib import AbstractContextManager

import torch

#: The phases of :meth:`sslkit.engine.trainer.Trainer.train_step` and its loop, in step order.
PHASES = ("data_wait", "augmentation", "masking", "teacher_forward", "student_forward", "losses", "backward",
          "optimizer", "ema")

_IDLE: AbstractContextManager[None] = contextlib.nullcontext()


class StepTimer:
    """Per-phase wall-clock milliseconds of the steps it is enabled for (see the module docstring)."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.enabled = False
        self._ms: dict[str, float] = {}

    def begin(self, enabled: bool) -> None:
        """Start a step; time its phases only when ``enabled`` (a logging step)."""
        self.enabled = enabled
        self._ms = {}

    def _sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    @contextlib.contextmanager
    def _timed(self, name: str) -> Iterator[None]:
        self._sync()
        start = time.perf_counter()
        try:
            yield
        finally:
            self._sync()
            self._ms[name] = self._ms.get(name, 0.0) + 1000.0 * (time.perf_counter() - start)

    def phase(self, name: str) -> AbstractContextManager[None]:
        """A context that adds its wall time to ``name`` on a timed step, and does nothing otherwise."""
        return self._timed(name) if self.enabled else _IDLE

    def take(self) -> dict[str, float]:
        """``{"time/<phase>": ms}`` of the step just timed (empty when it was not) and stop timing."""
        values = {f"time/{name}": ms for name, ms in self._ms.items()}
        self.enabled, self._ms = False, {}
        return values


#: A timer that is never enabled: the default of functions that take an optional timer.
UNTIMED = StepTimer(torch.device("cpu"))
