"""Shared test helpers: paths to the repository, recipes and the shared CIFAR-10 data."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

# Tiny models on a 2-core machine: one intra-op thread avoids contention with loader workers
# and parallel processes (multi-process tests start their own processes).
torch.set_num_threads(1)

REPO = Path(__file__).resolve().parents[1]
RECIPES = REPO / "recipes"
CIFAR10 = REPO.parent / "shared" / "data" / "cifar10"


@pytest.fixture
def write_recipe(tmp_path: Path):
    """Write YAML text to ``tmp_path/NAME`` and return its path."""

    def write(text: str, name: str = "recipe.yaml") -> Path:
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        return path

    return write


def pytest_runtest_setup(item: pytest.Item) -> None:
    """``@pytest.mark.cuda`` tests need a CUDA device: skipped without one (``pytest -m cuda`` runs them)."""
    if item.get_closest_marker("cuda") is not None and not torch.cuda.is_available():
        pytest.skip("needs a CUDA device")
