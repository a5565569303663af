"""Process groups and parallel strategies: single process, DDP and FSDP2 (under torchrun).

A single process needs no process group and no torchrun. A process launched as part of a
distributed job (torchrun, or ``MASTER_ADDR``, ``MASTER_PORT`` and ``RANK`` in the environment)
joins its process group, with ``nccl`` on CUDA and ``gloo`` on CPU, even when the job has one
process: ``train.strategy=ddp`` or ``fsdp2`` then wraps the model as on many processes (how one
GPU checks those code paths); without a process group they fall back to a single process.
"""

from __future__ import annotations

import datetime
import os
import warnings
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn

from sslkit.errors import SSLKitError


@dataclass(frozen=True)
class ProcessInfo:
    """This process's place in the run."""

    rank: int
    world_size: int
    local_rank: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def pick_device(preference: str, local_rank: int) -> torch.device:
    if preference == "cuda" and not torch.cuda.is_available():
        raise SSLKitError("run.device=cuda but no CUDA device is available (use run.device=auto or cpu)")
    if preference == "cpu" or (preference == "auto" and not torch.cuda.is_available()):
        return torch.device("cpu")
    return torch.device("cuda", local_rank)


def init_processes(device_preference: str) -> ProcessInfo:
    """Join the torchrun process group when there is one; otherwise a single process."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    device = pick_device(device_preference, local_rank)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    launched = all(key in os.environ for key in ("MASTER_ADDR", "MASTER_PORT", "RANK"))
    if (world_size > 1 or launched) and not dist.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        dist.init_process_group(backend, timeout=datetime.timedelta(minutes=30),
                                device_id=device if device.type == "cuda" else None)
    return ProcessInfo(rank, world_size, local_rank, device)


def resolve_strategy(strategy: str, world_size: int) -> str:
    if strategy == "auto":
        return "ddp" if world_size > 1 else "single"
    if strategy in ("ddp", "fsdp2") and world_size == 1 and not dist.is_initialized():
        return "single"  # no process group to wrap the model for
    if strategy == "single" and world_size > 1:
        raise SSLKitError("train.strategy=single cannot run on several processes; use ddp or fsdp2")
    return strategy


def _shard_units(module: nn.Module) -> list[nn.Module]:
    """Transformer blocks of the backbone, each head and each student-only module: the FSDP2 units."""
    units: list[nn.Module] = []
    blocks = getattr(module.backbone, "blocks", None)
    if isinstance(blocks, nn.Sequential | nn.ModuleList):
        units.extend(blocks)
    for name in ("heads", "student_modules"):
        group = getattr(module, name, None)
        if isinstance(group, nn.ModuleDict):
            units.extend(group.values())
    return units


def apply_fsdp2(module: nn.Module, param_dtype: torch.dtype | None) -> nn.Module:
    """``fully_shard`` each transformer block and head, then the whole module (mixed precision
    policy: parameters cast to ``param_dtype`` for compute, gradients reduced in fp32)."""
    from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard

    # The student's outputs include views (the CLS token of the normalised tokens, per-head slices of
    # one head call). FSDP2 warns on every step that an in-place op on such a view would skip its
    # all-gather; neither the engine nor the built-in losses modify step outputs in place, and the
    # every-recipe test checks FSDP2 weights against a single process.
    warnings.filterwarnings("ignore", message=r"FSDP2-wrapped module .* returned a view tensor", category=UserWarning)
    policy = MixedPrecisionPolicy(param_dtype=param_dtype, reduce_dtype=torch.float32)
    for unit in _shard_units(module):
        fully_shard(unit, mp_policy=policy)
    fully_shard(module, mp_policy=policy)
    return module


def wrap_student(student: nn.Module, strategy: str, info: ProcessInfo, param_dtype: torch.dtype | None) -> nn.Module:
    """The module that the step calls: the student itself, DDP around it, or the FSDP2-sharded student."""
    if strategy == "ddp":
        from torch.nn.parallel import DistributedDataParallel

        ids = [info.device.index] if info.device.type == "cuda" else None
        return DistributedDataParallel(student, device_ids=ids, broadcast_buffers=False)
    if strategy == "fsdp2":
        return apply_fsdp2(student, param_dtype)
    return student


def reshard(module: nn.Module) -> None:
    """Return FSDP2-managed parameters to their sharded state (a no-op without FSDP2).

    The teacher never runs backward, so the parameters its root module gathered for the forward
    stay unsharded until resharded here; the EMA update then pairs shard with shard.
    """
    from torch.distributed.fsdp import FSDPModule

    for sub in module.modules():
        if isinstance(sub, FSDPModule):
            sub.reshard()


def unsharded_copy(module: nn.Module, name: str, new: Callable[[], nn.Module], device: torch.device) -> nn.Module:
    """A plain module (from ``new()``) holding the full weights of ``module``'s FSDP2-sharded submodule
    ``name``, all-gathered from every process (a collective: every process must call it). Calling the
    sharded submodule directly would bypass the root's forward, which gathers the parameters it
    manages (patch embedding, norms) and, before the first step, initialises FSDP2's hooks."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

    full = get_model_state_dict(module, options=StateDictOptions(full_state_dict=True))
    prefix = f"{name}."
    copy = new()
    copy.load_state_dict({key[len(prefix):]: value for key, value in full.items() if key.startswith(prefix)})
    return copy.to(device).eval()
