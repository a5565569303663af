"""Bernoulli (i.i.d. per token) masking, the simpler variant of BEiT's block masking (Bao et al. 2022, section 2.2)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from sslkit.components import BuildContext
from sslkit.params import param


@dataclass
class BernoulliMaskerParams:
    """Parameters of the ``bernoulli`` masker."""

    ratio: float = param(
        0.3,
        "Probability that a patch is masked. The default 0.3 equals the mean ratio of the official "
        "stratified block masking (uniform over [0.1, 0.5]), so both maskers hide the same expected share.",
        ge=0.0,
        le=1.0,
    )


class BernoulliMasker:
    """Every patch of every selected crop masked independently with probability ``ratio``.

    The number of masked patches of a crop is Binomial(h * w, ratio); use the crop policy
    ``random_fraction`` with ``fraction: 1.0`` to mask every crop as in the reference variant.
    """

    def __init__(self, params: BernoulliMaskerParams, ctx: BuildContext) -> None:
        self.params = params

    def generate(self, n: int, grid: tuple[int, int], generator: torch.Generator) -> Tensor:
        """Masks ``[n, h * w]``: True with probability ``ratio``, independently per patch."""
        u = torch.rand(n, grid[0] * grid[1], generator=generator, device=generator.device)
        return u < self.params.ratio
