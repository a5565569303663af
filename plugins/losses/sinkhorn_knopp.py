"""Sinkhorn-Knopp normalisation of teacher logits over the global batch (reference section 3).

Shared by the ``dino``, ``ibot`` and ``patch_prototype`` losses. Starting from
``Q = exp(t / T)`` (``M`` samples by ``K`` prototypes, ``B`` = number of samples over all
processes), normalise the total mass to 1, then ``iterations`` times:

1. scale every prototype (column of ``Q``) to total mass ``1 / K`` over the global batch,
2. scale every sample (row of ``Q``) to total mass ``1 / B``,

and return ``B * Q``. After the final step every row sums to exactly 1 (a distribution over
prototypes per sample); the column sums over the global batch approach ``B / K`` (equal use
of prototypes) as the number of iterations grows. Column sums and the total are all-reduced,
so ``P`` processes holding parts of a batch get exactly the rows one process holding the
whole batch would get.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
from torch import Tensor

from sslkit import distributed


def _global_max(value: Tensor) -> Tensor:
    """Maximum over processes (in place and returned); identity in a single process."""
    if distributed.is_distributed():
        dist.all_reduce(value, op=dist.ReduceOp.MAX)
    return value


@torch.no_grad()
def sinkhorn_knopp(logits: Tensor, temperature: float, iterations: int = 3) -> Tensor:
    """Teacher targets ``[M, K]`` (float32, rows summing to 1) from this process's logits ``[M, K]``.

    Every process must call this together (it runs collectives), even with ``M == 0``.
    ``exp`` is taken after subtracting the global maximum logit: a constant factor that the
    first normalisation cancels exactly, so the result is that of ``exp(t / T)`` without its
    overflow.
    """
    if iterations < 1:
        raise ValueError(f"sinkhorn_knopp needs at least one iteration, got {iterations}")
    scaled = logits.detach().float() / temperature
    local_max = scaled.max() if scaled.numel() else scaled.new_tensor(float("-inf"))
    q = torch.exp(scaled - _global_max(local_max))
    n_samples = distributed.all_reduce_sum(q.new_tensor(float(q.shape[0])))
    n_prototypes = q.shape[1]
    q /= distributed.all_reduce_sum(q.sum())
    for _ in range(iterations):
        q /= distributed.all_reduce_sum(q.sum(dim=0, keepdim=True))
        q /= n_prototypes
        q /= q.sum(dim=1, keepdim=True)
        q /= n_samples
    return q * n_samples
