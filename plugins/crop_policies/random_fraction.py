"""Mask a random fixed-size subset of all global crops of the global batch (DINOv2's training code:
mask_sample_probability 0.5; iBOT, Zhou et al. 2022, section 3.2)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from sslkit.components import BuildContext
from sslkit.params import param


@dataclass
class RandomFractionParams:
    """Parameters of the ``random_fraction`` crop policy."""

    fraction: float = param(
        0.5,
        "Share of the n_global * G global crops that are masked: exactly int(n_global * G * fraction), "
        "a uniformly random subset (official mask_sample_probability 0.5; 1.0 masks every crop).",
        ge=0.0,
        le=1.0,
    )


class RandomFraction:
    """Exactly ``int(n_global * G * fraction)`` of the global batch's global crops, uniformly at random.

    This is the official DINOv2 / iBOT selection, drawn over the whole global batch rather than
    per process, so it does not depend on the number of processes. With 2 global crops and
    ``fraction = 0.5`` an image has both crops masked with probability ~1/4, one with ~1/2 and
    none with ~1/4 (sampling without replacement).
    """

    def __init__(self, params: RandomFractionParams, ctx: BuildContext) -> None:
        self.params = params

    def select(self, n_global: int, global_batch_size: int, generator: torch.Generator) -> Tensor:
        """Bool ``[n_global, G]``: True for the selected crops (crop-major, as the engine stores them)."""
        total = n_global * global_batch_size
        chosen = torch.randperm(total, generator=generator, device=generator.device)[
            : int(total * self.params.fraction)
        ]
        selected = torch.zeros(total, dtype=torch.bool, device=generator.device)
        selected[chosen] = True
        return selected.view(n_global, global_batch_size)
