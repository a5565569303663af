"""An evenly spaced subset of a dataset, to bound the cost of evaluation memory banks."""

from __future__ import annotations

from typing import Any

from sslkit.components import ImageDataset


class StridedSubset:
    """``count`` images of ``dataset`` at evenly spaced indices (deterministic; for a dataset
    stored class by class, every class keeps its share)."""

    def __init__(self, dataset: ImageDataset, count: int) -> None:
        self.dataset = dataset
        total = len(dataset)
        self.indices = [i * total // count for i in range(min(count, total))]
        self.classes = getattr(dataset, "classes", [])

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, index: int) -> tuple[Any, int]:
        return self.dataset[self.indices[index]]

    def describe(self, index: int) -> str:
        describe = getattr(self.dataset, "describe", None)
        original = self.indices[index]
        return describe(original) if describe is not None else f"image {original}"
