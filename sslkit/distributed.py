"""Process-group helpers that are no-ops in a single process (no torchrun, no process group).

Plugins use these to reduce over the global batch, so that a loss computed on N processes
equals the same loss computed on one process holding the whole batch.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
from torch import Tensor
from torch.autograd.function import FunctionCtx


def is_distributed() -> bool:
    """True when a process group is initialised with more than one process."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def world_size() -> int:
    return dist.get_world_size() if is_distributed() else 1


def rank() -> int:
    return dist.get_rank() if is_distributed() else 0


def is_main_process() -> bool:
    return rank() == 0


def all_reduce_sum(tensor: Tensor) -> Tensor:
    """Sum over processes (in place and returned); identity in a single process."""
    if is_distributed():
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor


def all_reduce_max(tensor: Tensor) -> Tensor:
    """Elementwise maximum over processes (in place and returned); identity in a single process.

    The engine agrees on per-step decisions with it: a flag set on any process is set on all.
    """
    if is_distributed():
        dist.all_reduce(tensor, op=dist.ReduceOp.MAX)
    return tensor


def all_reduce_mean(tensor: Tensor) -> Tensor:
    """Mean over processes (in place and returned); identity in a single process."""
    if is_distributed():
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
        tensor /= dist.get_world_size()
    return tensor


class _GatherWithGrad(torch.autograd.Function):
    @staticmethod
    def forward(ctx: FunctionCtx, tensor: Tensor) -> Tensor:
        parts = [torch.empty_like(tensor) for _ in range(dist.get_world_size())]
        dist.all_gather(parts, tensor.contiguous())
        return torch.cat(parts, dim=0)

    @staticmethod
    def backward(ctx: FunctionCtx, grad: Tensor) -> Tensor:
        grad = grad.contiguous()
        dist.all_reduce(grad, op=dist.ReduceOp.SUM)
        n = grad.shape[0] // dist.get_world_size()
        return grad[dist.get_rank() * n : (dist.get_rank() + 1) * n]


def all_gather(tensor: Tensor, with_grad: bool = False) -> Tensor:
    """Concatenate ``tensor`` from every process along dim 0 (rank order).

    With ``with_grad`` the gradient flows back to each process's own slice (the sum of the
    gradients all processes computed for it, matching single-process autograd when each
    process's loss is the global loss divided by the world size).
    """
    if not is_distributed():
        return tensor
    if with_grad:
        gathered: Tensor = _GatherWithGrad.apply(tensor)  # Function.apply is typed as returning Any
        return gathered
    parts = [torch.empty_like(tensor) for _ in range(dist.get_world_size())]
    dist.all_gather(parts, tensor.contiguous())
    return torch.cat(parts, dim=0)
