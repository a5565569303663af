"""Batch normalisation that always uses the statistics of the current batch (for the BatchNorm of
BYOL's projector and predictor MLPs, Grill et al. 2020, section 3.3).

``y = (x - mean) / sqrt(var + eps) * weight + bias`` with the per-feature ``mean`` and biased
``var`` of the rows of ``x``: in training *and* evaluation mode. sslkit's teacher is always in
evaluation mode, and the EMA update moves parameters only (buffers are never averaged), so a
standard ``nn.BatchNorm1d`` copied to the teacher would normalise with its initial running
statistics (mean 0, variance 1) forever. BYOL's target network, however, normalises with the
statistics of its batch like the online network; this module does so on both sides and keeps no
running statistics at all (nothing but ``weight`` and ``bias``, which the EMA moves).

``across_processes``: in a distributed run the statistics are those of the rows of *all*
processes (as ``nn.SyncBatchNorm`` in training mode; the sums are all-gathered with gradients), so a run
on N processes computes what one process holding the whole batch computes. Off: each process
uses its own rows (``nn.BatchNorm1d(track_running_stats=False)``), and the result depends on the
number of processes.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from sslkit import distributed


def _global_sum(per_process: Tensor) -> Tensor:
    """Sum of ``per_process`` ``[D]`` over all processes, differentiable (each process's slice gets
    the gradients that every process computed for it)."""
    return distributed.all_gather(per_process.unsqueeze(0), with_grad=True).sum(dim=0)


class BatchStatsNorm(nn.Module):
    """Normalise each feature of ``[M, D]`` rows with the batch's mean and variance, then scale and shift."""

    def __init__(self, dim: int, eps: float = 1e-5, across_processes: bool = True) -> None:
        super().__init__()
        self.eps = eps
        self.across_processes = across_processes
        self.weight = nn.Parameter(torch.ones(dim))
        self.bias = nn.Parameter(torch.zeros(dim))

    def forward(self, x: Tensor) -> Tensor:
        if x.dim() != 2:
            raise ValueError(f"BatchStatsNorm expects [rows, features], got shape {tuple(x.shape)}")
        processes = distributed.world_size() if self.across_processes else 1
        if x.shape[0] * processes < 2:
            raise ValueError("batch statistics need at least 2 rows per head call (a batch of one image has no "
                             "variance): use a larger batch, or norm: layer in the head")
        x32 = x.float()
        if processes == 1:
            out = F.batch_norm(x32, None, None, self.weight, self.bias, training=True, eps=self.eps)
            return out.to(x.dtype)
        count = x.shape[0] * processes
        mean = _global_sum(x32.sum(dim=0)) / count
        centred = x32 - mean
        var = _global_sum(centred.square().sum(dim=0)) / count
        return (centred * torch.rsqrt(var + self.eps) * self.weight + self.bias).to(x.dtype)

    def extra_repr(self) -> str:
        return f"{self.weight.shape[0]}, eps={self.eps}, across_processes={self.across_processes}"
