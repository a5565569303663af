"""Sinkhorn-Knopp normalisation of teacher logits over the global batch (SwAV, Caron et al. 2020, section 3.1 and eq.
3; DINOv2, Oquab et al. 2023, section 3).

Shared by the ``dino``, ``ibot`` and ``patch_prototype`` losses. Starting from
``Q = exp(t / T)`` (``M`` samples by ``K`` prototypes, ``B`` = number of samples over all
processes), ``iterations`` times:

1. scale every prototype (column of ``Q``) to total mass ``1 / K`` over the global batch,
2. scale every sample (row of ``Q``) to total mass ``1 / B``,

and return ``B * Q`` (SwAV, Caron et al. 2020, Sec. 3.1; DINOv2, Oquab et al. 2023, Sec. 4).
After the final step every row sums to exactly 1 (a distribution over prototypes per sample);
the column sums over the global batch approach ``B / K`` (equal use of prototypes) as the number
of iterations grows.

The iteration runs on ``log Q``: every scaling is the subtraction of a log-sum-exp, so the
result is finite for any finite ``t / T``. (In the linear domain a prototype whose logits all
lie far below the batch's largest one underflows to a column of zeros, and the next column
normalisation divides 0 by 0.) The constant factors ``1 / K`` and ``1 / B`` and the initial
normalisation of the total mass are cancelled exactly by the next normalisation, so they drop
out. The column log-sums over the global batch are all-reduced (the maximum of each column,
then the sum of ``exp(x - max)``), so ``P`` processes holding parts of a batch get the rows
one process holding the whole batch would get.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
from torch import Tensor

from sslkit import distributed


def _global_column_logsumexp(x: Tensor) -> Tensor:
    """``log(sum over the global batch of exp(x))`` per column, ``[1, K]``, stable for any finite ``x``.

    The per-column maximum is all-reduced with MAX first, then the sums of ``exp(x - max)`` with SUM.
    A process with no rows contributes ``-inf`` to the maximum and 0 to the sum.
    """
    col_max = x.amax(dim=0, keepdim=True) if x.shape[0] else x.new_full((1, x.shape[1]), float("-inf"))
    if distributed.is_distributed():
        dist.all_reduce(col_max, op=dist.ReduceOp.MAX)
    col_max = torch.where(torch.isfinite(col_max), col_max, torch.zeros_like(col_max))
    sums = distributed.all_reduce_sum(torch.exp(x - col_max).sum(dim=0, keepdim=True))
    return sums.log_() + col_max


@torch.no_grad()
def sinkhorn_knopp(logits: Tensor, temperature: float, iterations: int = 3) -> Tensor:
    """Teacher targets ``[M, K]`` (float32, rows summing to 1) from this process's logits ``[M, K]``.

    Every process must call this together (it runs collectives), even with ``M == 0``.
    """
    if iterations < 1:
        raise ValueError(f"sinkhorn_knopp needs at least one iteration, got {iterations}")
    log_q = logits.detach().float() / temperature
    for _ in range(iterations):
        log_q -= _global_column_logsumexp(log_q)
        log_q -= torch.logsumexp(log_q, dim=1, keepdim=True)
    return log_q.exp_()
