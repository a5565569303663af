"""Health of a teacher target distribution: cheap indicators of the two collapses of self-distillation.

DINO (Caron et al. 2021, section 5.3) names two ways the teacher's targets ``p`` (``[M, K]``, rows
summing to 1) can collapse: to the *uniform* distribution (every row has entropy ``ln K``:
centering dominates) or to *one dimension* (every row puts its mass on the same output
dimension: sharpening dominates). The losses that distil such targets (``dino``, ``ibot``,
``patch_prototype``) report, on logging steps:

- ``teacher_entropy``: the mean row entropy ``-sum_k p_k ln p_k`` (nats);
- ``entropy_gap``: ``ln K - teacher_entropy``, about 0 under uniform collapse;
- ``target_usage``: the fraction of the ``K`` dimensions that are the argmax of at least one row
  (``1 / K`` under one-dimension collapse, at most ``min(M, K) / K``);
- ``target_coverage``: ``(used - 1) / (min(M, K) - 1)``, the batch-size-independent version: 0 when
  every row picks the same dimension, 1 when the rows pick as many distinct ones as possible.

:class:`sslkit.monitoring.diagnostics.CollapseDetector` reads ``teacher_entropy``, ``entropy_gap`` and
``target_coverage``. Every function returns a 0-dim float32 tensor and never synchronises with the host.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor


def mean_entropy(probs: Tensor) -> Tensor:
    """Mean (over rows) Shannon entropy in nats of row distributions ``[M, K]`` (``0 ln 0 = 0``);
    ``ln K`` for uniform rows, 0 for one-hot rows and for ``M == 0``."""
    if probs.shape[0] == 0:
        return probs.new_zeros((), dtype=torch.float32)
    p = probs.float()
    entropy: Tensor = -torch.special.xlogy(p, p).sum(dim=-1).mean()
    return entropy


def _used_dimensions(probs: Tensor) -> Tensor:
    winners = probs.argmax(dim=-1).reshape(-1)
    return (torch.bincount(winners, minlength=probs.shape[-1]) > 0).sum().float()


def target_usage(probs: Tensor) -> Tensor:
    """Fraction of the ``K`` dimensions that are the argmax of at least one row of ``probs [M, K]``."""
    return _used_dimensions(probs) / probs.shape[-1]


def target_coverage(probs: Tensor) -> Tensor:
    """``(used - 1) / (min(M, K) - 1)`` with ``used`` the dimensions that are some row's argmax
    (1 when ``min(M, K) <= 1``: no collapse can be seen)."""
    attainable = min(probs.shape[-1], probs.reshape(-1, probs.shape[-1]).shape[0])
    if attainable <= 1:
        return torch.ones((), device=probs.device)
    return (_used_dimensions(probs) - 1.0) / (attainable - 1)


def target_health(probs: Tensor) -> dict[str, Tensor]:
    """``teacher_entropy``, ``entropy_gap``, ``target_usage`` and ``target_coverage`` of ``probs [M, K]``."""
    entropy = mean_entropy(probs)
    return {
        "teacher_entropy": entropy,
        "entropy_gap": math.log(probs.shape[-1]) - entropy,
        "target_usage": target_usage(probs),
        "target_coverage": target_coverage(probs),
    }
