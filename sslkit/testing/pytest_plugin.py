"""The ``sslkit`` pytest plugin (entry point ``pytest11: sslkit``): fixtures for plugin authors.

Active in every pytest run where sslkit is installed, so it imports nothing heavy: each
fixture imports its helper when a test requests it.

- ``sslkit_registry``: a :class:`sslkit.testing.RegistryScope` over the process registry;
  ``sslkit_registry.register(kind, name, factory, params)`` adds a component for this test
  only, and the registry is restored when the test ends.
- ``tiny_recipe``: a fresh dict of the tiny CPU recipe (:func:`sslkit.testing.tiny_recipe`).
- ``tiny_training``: :func:`sslkit.testing.run_tiny_training` bound to the test's ``tmp_path``:
  ``tiny_training(losses={"mine": {"name": "my_loss"}}, steps=2)``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from sslkit.engine.trainer import TrainResult
    from sslkit.testing.registry import RegistryScope


@pytest.fixture
def sslkit_registry() -> Iterator[RegistryScope]:
    """The process registry for this test; registrations are undone when the test ends."""
    from sslkit.testing.registry import RegistryScope

    scope = RegistryScope()
    try:
        yield scope
    finally:
        scope.restore()


@pytest.fixture
def tiny_recipe() -> dict[str, Any]:
    """A fresh copy of the tiny CPU recipe as plain data (edit it freely)."""
    from sslkit.testing.training import tiny_recipe as make

    return make()


@pytest.fixture
def tiny_training(tmp_path: Path) -> Callable[..., TrainResult]:
    """``run_tiny_training`` with ``tmp_path`` filled in."""
    from sslkit.testing.training import run_tiny_training

    def train(*args: Any, **kwargs: Any) -> TrainResult:
        return run_tiny_training(tmp_path, *args, **kwargs)

    return train
