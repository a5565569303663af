"""The prototype layer of the DINO / iBOT heads: a bias-free weight-normalised linear layer.

DINO and DINOv2 wrap the last linear layer of their heads in weight normalisation
(Salimans & Kingma, 2016): ``W = g * v / ||v||`` with one norm and one magnitude ``g`` per
output row (prototype). The two methods differ in ``g``:

- DINO v1 (Caron et al., 2021, Sec. 3.1 and its ``norm_last_layer``) fixes ``g`` to 1, so
  ``W = v / ||v||`` row by row and the outputs are cosine similarities in [-1, 1];
- DINOv2 (Oquab et al., 2023) initialises ``g`` to 1 and trains it with the rest of the last
  layer (frozen with it during the first epoch, weight decay multiplier 1).

This module computes the formula from plain parameters, ``weight`` (``v``, ``[out_dim, in_dim]``)
and, when trainable, ``g`` (``[out_dim, 1]``): the same outputs and gradients as
``torch.nn.utils.parametrizations.weight_norm`` without its parametrisation machinery, so deep
copies (the EMA teacher), ``state_dict`` and the EMA update see ordinary parameters.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class NormalizedPrototypes(nn.Module):
    """``x -> x @ (g * normalize(weight, dim=1)).T``: scores against ``out_dim`` prototypes.

    ``weight`` has shape ``[out_dim, in_dim]`` (one prototype per row) and is initialised
    trunc-normal with std 0.02; its scale is irrelevant since every row is normalised in use.
    With ``trainable_norm`` the per-row magnitude ``g`` (``[out_dim, 1]``, initialised to 1) is
    a parameter; without it ``g`` is the constant 1 and no parameter is created.
    """

    def __init__(self, in_dim: int, out_dim: int, trainable_norm: bool = False) -> None:
        super().__init__()
        self.weight = nn.Parameter(nn.init.trunc_normal_(torch.empty(out_dim, in_dim), std=0.02))
        self.g = nn.Parameter(torch.ones(out_dim, 1)) if trainable_norm else None

    def normalized_weight(self) -> Tensor:
        """The prototype directions ``v / ||v||``: every row of ``weight`` scaled to unit L2 norm."""
        return F.normalize(self.weight, dim=1)

    def effective_weight(self) -> Tensor:
        """The weight used in the forward pass: ``g * v / ||v||`` (``v / ||v||`` when ``g`` is fixed)."""
        return self.normalized_weight() if self.g is None else self.g * self.normalized_weight()

    def forward(self, x: Tensor) -> Tensor:
        return F.linear(x, self.effective_weight())

    def extra_repr(self) -> str:
        g = "trainable g" if self.g is not None else "g fixed to 1"
        return f"in_dim={self.weight.shape[1]}, out_dim={self.weight.shape[0]}, rows normalised, {g}"
