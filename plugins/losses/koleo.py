"""The KoLeo regulariser on the student's backbone CLS tokens (Sablayrolles et al. 2019, section 3.2,
as used in DINOv2, Oquab et al. 2023, section 4, and DINOv3).

For a set of ``n`` features: ``x_i = x_i / max(||x_i||, eps)``, ``nn(i) = argmax_{j != i} x_i . x_j``
(the nearest other sample) and ``loss = -(1 / n) sum_i log(||x_i - x_nn(i)|| + eps)``: it pushes
the features to spread uniformly on the sphere.

The sets: one per global crop index ``c`` (the ``B`` images' ``c``-th global crop, so that the
two views of one image are never each other's neighbour), and the loss is the **mean** over
the ``n_global`` crop indices. (DINOv2 sums over the two crops instead: its weight 0.1 on the
sum equals weight 0.2 on this mean.)

Modes:

- ``local``: each process uses its own ``B`` samples (DINOv2); undefined with one sample per
  process.
- ``distributed`` (DINOv3): the features of crop ``c`` are gathered from all processes (or
  within groups of ``group_size`` consecutive ranks), with gradients, and every process
  returns the loss of its group's gathered set. Because the gather's backward sums the
  gradients of all group members, DDP's gradient averaging then optimises the mean of the
  groups' losses, and with one group the run equals one process holding the whole batch.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import Tensor
from torch.autograd.function import FunctionCtx

from sslkit import distributed
from sslkit.components import BuildContext, Loss, Output, StepContext, StepInputs
from sslkit.params import param


@dataclass
class KoLeoLossParams:
    """Parameters of the ``koleo`` loss."""

    mode: Literal["local", "distributed"] = param(
        "local",
        "'local': nearest neighbours among this process's samples (DINOv2); 'distributed': among the "
        "samples of all processes (or of each group of group_size ranks), as in DINOv3.",
    )
    group_size: int | None = param(
        None,
        "mode distributed: gather within groups of this many consecutive ranks (must divide the number "
        "of processes); null: one group of all processes.",
        ge=1,
    )
    eps: float = param(1e-8, "Epsilon of the L2 normalisation and inside the log of the distance.", gt=0.0)


def koleo(features: Tensor, eps: float = 1e-8) -> Tensor:
    """KoLeo loss of each set in ``features`` ``[S, n, D]`` -> ``[S]`` (needs ``n >= 2``)."""
    x = F.normalize(features, dim=-1, eps=eps)
    with torch.no_grad():
        similarity = x @ x.transpose(1, 2)
        similarity.diagonal(dim1=1, dim2=2).fill_(float("-inf"))
        nearest = similarity.argmax(dim=-1)
    neighbours = torch.gather(x, 1, nearest.unsqueeze(-1).expand_as(x))
    distances = torch.linalg.vector_norm(x - neighbours, dim=-1)
    return -torch.log(distances + eps).mean(dim=-1)


class _GroupGatherCtx(FunctionCtx):
    """The autograd context of :class:`_GroupGather`: the process group forward gathered within."""

    group: dist.ProcessGroup


class _GroupGather(torch.autograd.Function):
    """All-gather along dim 0 within ``group``; backward sums the group's gradients for each slice."""

    @staticmethod
    def forward(ctx: _GroupGatherCtx, tensor: Tensor, group: dist.ProcessGroup) -> Tensor:
        ctx.group = group
        parts = [torch.empty_like(tensor) for _ in range(dist.get_world_size(group))]
        dist.all_gather(parts, tensor.contiguous(), group=group)
        return torch.cat(parts, dim=0)

    @staticmethod
    def backward(ctx: _GroupGatherCtx, grad: Tensor) -> tuple[Tensor, None]:
        grad = grad.contiguous()
        dist.all_reduce(grad, op=dist.ReduceOp.SUM, group=ctx.group)
        n = grad.shape[0] // dist.get_world_size(ctx.group)
        start = dist.get_rank(ctx.group) * n
        return grad[start : start + n], None


class KoLeoLoss(Loss):
    """KoLeo: -mean log distance of each student global-crop CLS feature to its nearest other
    sample, per global crop index, averaged over the global crops.

    Input: ``student``, the student's backbone CLS tokens of the global crops (``[n_global * B, D]``,
    crop-major).
    """

    def __init__(self, params: KoLeoLossParams, ctx: BuildContext) -> None:
        super().__init__()
        self.params = params
        self.inputs = {"student": Output("cls", model="student", crops="global")}
        self._group: dist.ProcessGroup | None = None

    def _rank_group(self) -> dist.ProcessGroup | None:
        """This rank's process group of ``group_size`` consecutive ranks (``None``: all processes).

        Created on first use; every rank creates every group, in the same order, as
        ``torch.distributed.new_group`` requires.
        """
        size, world = self.params.group_size, distributed.world_size()
        if size is None or size == world:
            return None
        if world % size:
            raise ValueError(f"koleo: group_size {size} does not divide the number of processes {world}")
        if self._group is None:
            for start in range(0, world, size):
                group = dist.new_group(list(range(start, start + size)))  # NON_GROUP_MEMBER on other ranks
                if isinstance(group, dist.ProcessGroup) and start <= distributed.rank() < start + size:
                    self._group = group
        return self._group

    def forward(self, inputs: StepInputs, ctx: StepContext) -> Tensor:
        cls = inputs["student"].float()
        per_crop = cls.reshape(ctx.n_global, -1, cls.shape[-1])  # [n_global, B, D]
        if self.params.mode == "distributed" and distributed.is_distributed():
            samples_first = per_crop.transpose(0, 1)  # gather along the sample axis
            group = self._rank_group()
            if group is None:
                gathered = distributed.all_gather(samples_first, with_grad=True)
            else:
                gathered = _GroupGather.apply(samples_first, group)
            per_crop = gathered.transpose(0, 1)
        if per_crop.shape[1] < 2:
            hint = (
                " In local mode each process only sees its own images: use mode: distributed (or a larger "
                "batch per process)."
                if self.params.mode == "local"
                else ""
            )
            raise ValueError(
                f"koleo needs at least 2 samples per global crop to find a nearest neighbour, "
                f"got {per_crop.shape[1]}.{hint}"
            )
        return koleo(per_crop, self.params.eps).mean()
