"""Template of a masker plugin: an exact random ratio of patches per crop, with its tests
(exact counts, determinism, registration, a few training steps with the iBOT loss)."""

from __future__ import annotations

from typing import Any

USAGE = '''\
```yaml
losses:
  ibot: {name: ibot, weight: 1.0, head: dino}   # any loss that needs masks
masking:
  masker: {name: $name, ratio: 0.4}
```'''



def add_to_recipe(recipe: dict[str, Any], name: str) -> None:
    """Mask with this masker for an iBOT loss (masks are only drawn when a loss needs them)."""
    recipe["losses"]["ibot"] = {"name": "ibot", "weight": 1.0, "head": "dino"}
    recipe["masking"] = {"masker": {"name": name, "ratio": 0.4}}


MODULE = '''\
"""The ``$name`` masker: every selected crop gets exactly ``round(ratio * h * w)`` masked patches,
chosen uniformly at random (unlike Bernoulli masking, whose count varies from crop to crop).

Randomness comes only from the engine's ``generator`` (seeded from the run seed and the step),
so that a run is reproducible and resumes exactly.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from sslkit.components import BuildContext
from sslkit.params import param
from torch import Tensor


@dataclass
class ${cls}Params:
    """Parameters of the ``$name`` masker (every field: default, documentation, bounds)."""

    ratio: float = param(0.3, "Fraction of each selected crop's patches that are masked.", ge=0.0, le=1.0)


class $cls:
    """Masks ``[n, h * w]`` with exactly ``round(ratio * h * w)`` True entries per row."""

    def __init__(self, params: ${cls}Params, ctx: BuildContext) -> None:
        self.params = params

    def generate(self, n: int, grid: tuple[int, int], generator: torch.Generator) -> Tensor:
        n_patches = grid[0] * grid[1]
        count = round(self.params.ratio * n_patches)
        scores = torch.rand(n, n_patches, generator=generator, device=generator.device)
        ranks = scores.argsort(dim=1).argsort(dim=1)  # a uniformly random permutation per row
        return ranks < count
'''

TEST = '''\
"""Tests of the ``$name`` masker with sslkit's plugin test kit (``sslkit.testing``)."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from sslkit.components import BuildContext, Masker
from sslkit.recipe import load_recipe
from sslkit.registry import get_registry
from sslkit.testing import run_tiny_training

from $package.$module import $cls, ${cls}Params


@pytest.mark.parametrize(("ratio", "grid"), [(0.0, (4, 4)), (0.3, (4, 4)), (0.5, (3, 5)), (1.0, (2, 2))])
def test_masks_exactly_the_ratio(ratio: float, grid: tuple[int, int]) -> None:
    masker = $cls(${cls}Params(ratio=ratio), BuildContext())
    assert isinstance(masker, Masker)
    masks = masker.generate(7, grid, torch.Generator().manual_seed(0))
    assert masks.dtype == torch.bool and masks.shape == (7, grid[0] * grid[1])
    assert masks.sum(dim=1).tolist() == [round(ratio * grid[0] * grid[1])] * 7


def test_every_patch_is_equally_likely_and_draws_follow_the_generator() -> None:
    masker = $cls(${cls}Params(ratio=0.25), BuildContext())
    masks = masker.generate(4000, (4, 4), torch.Generator().manual_seed(1))
    frequency = masks.float().mean(dim=0)
    assert torch.allclose(frequency, torch.full((16,), 0.25), atol=0.03)
    again = masker.generate(4000, (4, 4), torch.Generator().manual_seed(1))
    assert torch.equal(masks, again)


def test_example_recipe_is_valid() -> None:
    recipe = Path(__file__).resolve().parents[1] / "recipes" / "${name}_tiny.yaml"
    resolved = load_recipe(recipe)
    assert resolved.spec("masking.masker").component.name == "$name"


def test_is_registered_by_this_distribution() -> None:
    component = get_registry().get("masker", "$name")
    assert component.provider.distribution == "$dist"


def test_trains_with_the_ibot_loss(tmp_path) -> None:
    losses = {"ibot": {"name": "ibot", "weight": 1.0, "head": "dino"}}
    masking = {"masker": {"name": "$name", "ratio": 0.4}}
    result = run_tiny_training(tmp_path, losses=losses, changes={"masking": masking}, steps=2)
    assert result.completed and result.step == 2
    assert math.isfinite(result.final_losses["ibot"])
'''
