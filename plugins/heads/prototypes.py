"""The prototype layer of the DINO / iBOT heads: a bias-free linear layer with unit-norm rows.

DINO wraps its last linear layer in weight normalisation, ``W = g * v / ||v||`` with one norm
per output row, and fixes the magnitude ``g`` to 1 (reference section 2). With ``g`` fixed
this is exactly ``W = v / ||v||`` row by row, which is what this module computes from a plain
``weight`` parameter: the same outputs and the same gradients as the weight-normalised layer,
with no parametrisation machinery, so deep copies (the EMA teacher), ``state_dict`` and the
EMA update see one ordinary parameter.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class NormalizedPrototypes(nn.Module):
    """``x -> x @ normalize(weight, dim=1).T``: cosine-like scores against ``out_dim`` prototypes.

    ``weight`` has shape ``[out_dim, in_dim]`` (one prototype per row) and is initialised
    trunc-normal with std 0.02; its scale is irrelevant since every row is normalised in use.
    """

    def __init__(self, in_dim: int, out_dim: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(nn.init.trunc_normal_(torch.empty(out_dim, in_dim), std=0.02))

    def normalized_weight(self) -> Tensor:
        """The prototypes as used: every row scaled to unit L2 norm."""
        return F.normalize(self.weight, dim=1)

    def forward(self, x: Tensor) -> Tensor:
        return F.linear(x, self.normalized_weight())

    def extra_repr(self) -> str:
        return f"in_dim={self.weight.shape[1]}, out_dim={self.weight.shape[0]}, rows normalised"
