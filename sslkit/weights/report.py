"""The initialisation report: how much of a backbone came from its ``init_from`` source.

Saved by the trainer as ``init_report.json`` in the run directory and printed at start, so that a
checkpoint that fits only in part (the failure where 2 of 211 tensors load silently) is visible,
and an error below the recipe's ``init_min_fraction``.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from sslkit.weights.sources import listing

REPORT_FILE = "init_report.json"


@dataclass
class InitReport:
    """Counts by tensor and by element (number of values) of the backbone's state dict, and the
    names behind them (see :class:`sslkit.weights.loading.LoadResult`)."""

    source: str
    file: str
    kind: str  # sslkit, transformers or file
    layout: str  # the layout the backbone read the tensors as
    description: str
    total_tensors: int
    loaded_tensors: int
    total_elements: int
    loaded_elements: int
    min_fraction: float
    loaded: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    mismatched: list[str] = field(default_factory=list)
    reshaped: dict[str, str] = field(default_factory=dict)

    @property
    def tensor_fraction(self) -> float:
        return self.loaded_tensors / self.total_tensors if self.total_tensors else 1.0

    @property
    def element_fraction(self) -> float:
        return self.loaded_elements / self.total_elements if self.total_elements else 1.0

    def shortfalls(self) -> list[str]:
        """The measures (``tensors``, ``elements``) whose loaded fraction is below ``min_fraction``."""
        return [
            name
            for name, value in (("tensors", self.tensor_fraction), ("elements", self.element_fraction))
            if value < self.min_fraction
        ]

    def summary(self) -> str:
        """A few lines for the console: counts, fractions and the names that did not load as they are."""
        lines = [
            f"init_from {self.source} ({self.kind}, read as {self.layout} layout"
            + (f"; {self.description}" if self.description else "")
            + f"): loaded {self.loaded_tensors}/{self.total_tensors} tensors ({self.tensor_fraction:.1%}), "
            f"{self.loaded_elements:,}/{self.total_elements:,} elements ({self.element_fraction:.1%})"
        ]
        reshaped = [f"{k} ({v})" for k, v in self.reshaped.items()]
        for label, items in (("reshaped", reshaped), ("missing", self.missing), ("unexpected", self.unexpected),
                             ("shape mismatch", self.mismatched)):
            if items:
                lines.append(f"  {label} ({len(items)}): {listing(items)}")
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["tensor_fraction"] = self.tensor_fraction
        data["element_fraction"] = self.element_fraction
        return data

    def save(self, path: Path) -> None:
        """Write the report as JSON (``init_report.json`` in a run directory)."""
        path.write_text(json.dumps(self.to_dict(), indent=2) + "\n", encoding="utf-8")
