"""Schedules for numeric component parameters, written in the recipe in place of the value.

Any float parameter of a component entry (and a loss's ``weight``) may be a mapping with a
``schedule`` key instead of a number::

    teacher_temp: {schedule: linear, start: 0.04, end: 0.07, length: 30, unit: epochs}
    weight: {schedule: steps, values: [0.0, 2.0], at: [10000]}
    momentum: {schedule: cosine, start: 0.9, end: 1.0}

- ``constant``: ``value`` at every step.
- ``linear``: ``start`` before ``begin``, then the points of ``linspace(start, end, length)`` (``end``
  reached at step ``begin + length - 1``, as DINOv2's warm-ups), then ``end``.
- ``cosine``: ``start`` before ``begin``, a half-cosine ``end + (start - end) (1 + cos(pi t / length)) / 2``
  over ``length`` steps (default: to the end of the run), then ``end``.
- ``steps``: piecewise constant: ``values[i]`` from milestone ``at[i - 1]`` on (``values[0]`` first).

``begin``, ``length`` and ``at`` count steps, or epochs of ``train.epoch_length`` steps with
``unit: epochs``. The component is built with the value at step 0; the engine writes the value of
each step into the component's parameters before the step and logs it as ``schedule/<key>``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sslkit.errors import suggest

KINDS = ("constant", "linear", "cosine", "steps")
_KEYS = {
    "constant": {"value"},
    "linear": {"start", "end", "length", "begin", "unit"},
    "cosine": {"start", "end", "length", "begin", "unit"},
    "steps": {"values", "at", "unit"},
}
_REQUIRED = {"constant": {"value"}, "linear": {"start", "end", "length"}, "cosine": {"start", "end"},
             "steps": {"values", "at"}}


@dataclass(frozen=True)
class ParamSchedule:
    """A parsed schedule; :meth:`value` evaluates it at a step."""

    kind: str
    start: float = 0.0
    end: float = 0.0
    begin: float = 0.0
    length: float | None = None
    values: tuple[float, ...] = ()
    at: tuple[float, ...] = ()
    unit: str = "steps"

    def value(self, step: int, epoch_length: int, max_steps: int) -> float:
        scale = epoch_length if self.unit == "epochs" else 1
        if self.kind == "constant":
            return self.start
        if self.kind == "steps":
            passed = sum(step >= round(m * scale) for m in self.at)
            return self.values[passed]
        begin = round(self.begin * scale)
        length = round(self.length * scale) if self.length is not None else max_steps - begin
        t = step - begin
        if t < 0:
            return self.start
        if self.kind == "linear":
            if t >= length:
                return self.end
            return self.start if length <= 1 else self.start + (self.end - self.start) * t / (length - 1)
        progress = min(t / length, 1.0) if length > 0 else 1.0
        return self.end + 0.5 * (self.start - self.end) * (1.0 + math.cos(math.pi * progress))

    def extremes(self) -> tuple[float, ...]:
        """Every value the schedule takes at a phase boundary (to check a parameter's bounds)."""
        return self.values if self.kind == "steps" else (self.start, self.end)


def is_schedule(value: Any) -> bool:
    return isinstance(value, Mapping) and "schedule" in value


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def parse_schedule(spec: Mapping[str, Any]) -> tuple[ParamSchedule | None, list[str]]:
    """The schedule of a recipe mapping, or ``None`` and the problems found."""
    kind = spec.get("schedule")
    if kind not in KINDS:
        return None, [f"schedule {kind!r} is not one of {', '.join(KINDS)}{suggest(str(kind), KINDS)}"]
    problems = []
    allowed = _KEYS[kind] | {"schedule"}
    for key in sorted(set(spec) - allowed):
        problems.append(f"unknown key {key!r} of a {kind} schedule{suggest(key, allowed)}; allowed: "
                        f"{', '.join(sorted(allowed))}")
    for key in sorted(_REQUIRED[kind] - set(spec)):
        problems.append(f"a {kind} schedule needs {key!r}")
    if problems:
        return None, problems
    unit = spec.get("unit", "steps")
    if unit not in ("steps", "epochs"):
        problems.append(f"unit must be 'steps' or 'epochs', got {unit!r}")
    for key in ("value", "start", "end", "begin", "length"):
        if key in spec and not _number(spec[key]):
            problems.append(f"{key} must be a number, got {spec[key]!r}")
    if "length" in spec and _number(spec["length"]) and spec["length"] < 0:
        problems.append(f"length must be >= 0, got {spec['length']!r}")
    if kind == "steps":
        values, at = spec["values"], spec["at"]
        if not (isinstance(values, list) and values and all(_number(v) for v in values)):
            problems.append(f"values must be a non-empty list of numbers, got {values!r}")
        elif not (isinstance(at, list) and all(_number(v) for v in at) and len(at) == len(values) - 1):
            problems.append(f"at must list one milestone fewer than values ({len(values) - 1}), got {at!r}")
        elif sorted(at) != at:
            problems.append(f"at must be increasing, got {at!r}")
    if problems:
        return None, problems
    if kind == "constant":
        return ParamSchedule(kind, start=float(spec["value"]), end=float(spec["value"])), []
    if kind == "steps":
        return ParamSchedule(kind, values=tuple(float(v) for v in spec["values"]),
                             at=tuple(float(v) for v in spec["at"]), unit=unit), []
    length = spec.get("length")
    return ParamSchedule(kind, start=float(spec["start"]), end=float(spec["end"]), begin=float(spec.get("begin", 0)),
                         length=float(length) if length is not None else None, unit=unit), []
