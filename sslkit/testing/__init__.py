"""Test helpers for plugin authors (and sslkit's own tests).

Loaded lazily, so that the pytest plugin (:mod:`sslkit.testing.pytest_plugin`, active in every
pytest run of an environment where sslkit is installed) costs nothing until a helper is used.

- :func:`registered` / :class:`RegistryScope`: register a component temporarily into the
  process registry (fixture ``sslkit_registry``).
- :func:`make_step_inputs` / :class:`RandomStep` / :func:`make_step_context`: random, well-formed
  inputs of a loss (built from its declared ``inputs``) and step contexts.
- :func:`assert_loss_contract`: the rules every loss must follow, checked in one call.
- :func:`assert_loss_distributed`: the loss on 2 (or ``world_size``) gloo processes trains like one
  process holding the whole batch; :func:`run_on_processes`: run a function on gloo processes.
- :class:`TinyPatchBackbone`: a small real backbone for components that run a model.
- :func:`tiny_recipe` / :func:`run_tiny_training`: a few real CPU training steps in-process
  (fixtures ``tiny_recipe`` and ``tiny_training``); :func:`assert_resumed`: the run continued
  from a given checkpoint.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from sslkit.testing.backbone import TinyPatchBackbone
    from sslkit.testing.contract import LossCheck, assert_loss_contract
    from sslkit.testing.distributed import DistributedCheck, assert_loss_distributed, run_on_processes
    from sslkit.testing.registry import TESTING_DISTRIBUTION, RegistryScope, registered
    from sslkit.testing.step import RandomStep, make_step_context, make_step_inputs
    from sslkit.testing.training import assert_resumed, run_tiny_training, tiny_recipe, write_recipe

_EXPORTS = {
    "TinyPatchBackbone": "sslkit.testing.backbone",
    "LossCheck": "sslkit.testing.contract",
    "assert_loss_contract": "sslkit.testing.contract",
    "DistributedCheck": "sslkit.testing.distributed",
    "assert_loss_distributed": "sslkit.testing.distributed",
    "run_on_processes": "sslkit.testing.distributed",
    "TESTING_DISTRIBUTION": "sslkit.testing.registry",
    "RegistryScope": "sslkit.testing.registry",
    "registered": "sslkit.testing.registry",
    "RandomStep": "sslkit.testing.step",
    "make_step_context": "sslkit.testing.step",
    "make_step_inputs": "sslkit.testing.step",
    "assert_resumed": "sslkit.testing.training",
    "run_tiny_training": "sslkit.testing.training",
    "tiny_recipe": "sslkit.testing.training",
    "write_recipe": "sslkit.testing.training",
}

__all__ = [
    "TESTING_DISTRIBUTION",
    "DistributedCheck",
    "LossCheck",
    "RandomStep",
    "RegistryScope",
    "TinyPatchBackbone",
    "assert_loss_contract",
    "assert_loss_distributed",
    "assert_resumed",
    "make_step_context",
    "make_step_inputs",
    "registered",
    "run_on_processes",
    "run_tiny_training",
    "tiny_recipe",
    "write_recipe",
]


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'sslkit.testing' has no attribute {name!r}")
    value = getattr(importlib.import_module(_EXPORTS[name]), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_EXPORTS})
