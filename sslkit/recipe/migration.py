"""Recipe keys that moved, with how to write them now (reported instead of a bare "unknown key")."""

from __future__ import annotations

from typing import Any

from sslkit.errors import Problem
from sslkit.recipe.source import Locations

MOVED: dict[str, str] = {
    "teacher.temp": "the teacher temperature is a parameter of the losses that use it: write "
                    "losses.<entry>.teacher_temp: {schedule: linear, start: <teacher.temp>, end: <teacher.temp_end>, "
                    "length: <teacher.temp_warmup_epochs>, unit: epochs} (see docs/recipes.md, 'Schedules')",
    "teacher.temp_end": "see teacher.temp: the end value of the losses' teacher_temp schedule",
    "teacher.temp_warmup_epochs": "see teacher.temp: the length of the losses' teacher_temp schedule",
    "optim.freeze_last_layer_epochs": "the last-layer freeze is a parameter of the heads that have one: write "
                                      "model.heads.<entry>.freeze_last_layer_epochs: <epochs>",
}


def moved_keys(data: dict[str, Any], locations: Locations) -> list[Problem]:
    """A problem for every moved key present in ``data`` (composed recipe), removing it from ``data``."""
    problems = []
    for dotted, hint in MOVED.items():
        section, _, key = dotted.partition(".")
        node = data.get(section)
        if isinstance(node, dict) and key in node:
            del node[key]
            problems.append(Problem(dotted, f"this key moved: {hint}", locations.get(dotted)))
    return problems
