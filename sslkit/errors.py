"""User-facing errors: each says where (file, line, key), what was expected and what exists.

The CLI prints these without a traceback and exits non-zero; anything else is a bug.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from dataclasses import dataclass


class SSLKitError(Exception):
    """An error caused by the user's input or environment, reported without a traceback."""


def suggest(word: str, candidates: Iterable[str]) -> str:
    """Return ``" (did you mean 'x'?)"`` for the closest candidate, or ``""`` when none is close."""
    matches = difflib.get_close_matches(str(word), [str(c) for c in candidates], n=1, cutoff=0.6)
    return f" (did you mean '{matches[0]}'?)" if matches else ""


@dataclass(frozen=True)
class Problem:
    """One validation problem: the dotted key, what is wrong, and where it came from."""

    key: str
    message: str
    source: str | None = None  # "path/to/file.yaml:12" or "command line"

    def __str__(self) -> str:
        where = f"{self.source}: " if self.source else ""
        return f"{where}{self.key}: {self.message}"


class RecipeError(SSLKitError):
    """One or more problems in a recipe, reported together."""

    def __init__(self, problems: list[Problem], header: str = "invalid recipe") -> None:
        self.problems = problems
        lines = [f"{header} ({len(problems)} problem{'s' if len(problems) != 1 else ''}):"]
        lines += [f"  - {p}" for p in problems]
        super().__init__("\n".join(lines))


class PluginError(SSLKitError):
    """A plugin failed to load or register, or two providers claim the same name."""
