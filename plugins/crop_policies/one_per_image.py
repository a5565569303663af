"""Mask exactly one global crop of every image (a crop-selection variant of iBOT's, Zhou et al. 2022, section 3.2)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from sslkit.components import BuildContext


@dataclass
class OnePerImageParams:
    """The ``one_per_image`` crop policy has no parameters."""


class OnePerImage:
    """One of the ``n_global`` global crops of every image, chosen uniformly at random.

    Every image then contributes the same number of masked crops to the patch-level losses;
    the engine reuses this selection for every such loss in the step.
    """

    def __init__(self, params: OnePerImageParams, ctx: BuildContext) -> None:
        self.params = params

    def select(self, n_global: int, global_batch_size: int, generator: torch.Generator) -> Tensor:
        """Bool ``[n_global, G]`` with exactly one True per column."""
        device = generator.device
        chosen = torch.randint(n_global, (global_batch_size,), generator=generator, device=device)
        return chosen[None, :] == torch.arange(n_global, device=device)[:, None]
