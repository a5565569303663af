"""The EMA teacher update (DINO, Caron et al. 2021, section 3.1): teacher = m * teacher + (1 - m) * student."""

from __future__ import annotations

import torch
from torch import nn


@torch.no_grad()
def ema_update(teacher: nn.Module, student: nn.Module, momentum: float) -> None:
    """Move every teacher parameter towards its student twin (one fused foreach lerp).

    Parameters are matched by name, so the two modules must have the same structure; floating-point
    buffers (e.g. BatchNorm running statistics of a head) are copied from the student, so that the
    teacher, which always runs in evaluation mode, normalises with the statistics the student gathered.
    """
    t_params = dict(teacher.named_parameters())
    pairs = [(t_params[n], p) for n, p in student.named_parameters() if n in t_params]
    if len(pairs) != len(t_params):
        missing = sorted(set(t_params) - {n for n, _ in student.named_parameters()})
        raise RuntimeError(f"teacher and student differ: {missing[:5]}")
    t_buffers = dict(teacher.named_buffers())
    for name, buffer in student.named_buffers():
        if name in t_buffers and buffer.is_floating_point():
            _local(t_buffers[name]).copy_(_local(buffer))
    if not pairs:  # e.g. a recipe without heads
        return
    teachers = [_local(t) for t, _ in pairs]
    students = [_local(s) for _, s in pairs]
    torch._foreach_lerp_(teachers, students, 1.0 - momentum)


def _local(tensor: torch.Tensor) -> torch.Tensor:
    """The local shard of a DTensor (FSDP2) or the tensor itself."""
    to_local = getattr(tensor, "to_local", None)
    return to_local() if to_local is not None else tensor.data
