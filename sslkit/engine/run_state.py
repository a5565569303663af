"""Saving and restoring everything a run needs to continue exactly where it stopped.

State dicts are gathered as full (unsharded) tensors keyed by parameter name, so that a run
saved on N processes (DDP or FSDP2) resumes on any number of processes.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.distributed.checkpoint.state_dict import (
    StateDictOptions,
    get_model_state_dict,
    get_optimizer_state_dict,
    set_model_state_dict,
    set_optimizer_state_dict,
)

from sslkit import distributed
from sslkit.engine.checkpoint import load_newest_readable, save_checkpoint
from sslkit.engine.run_dir import version_differences, versions, write_run_files
from sslkit.engine.strategy import ProcessInfo
from sslkit.errors import SSLKitError
from sslkit.registry import Registry

log = logging.getLogger("sslkit")
_FULL = StateDictOptions(full_state_dict=True, cpu_offload=True)
# parameters that never received a gradient (e.g. an unused mask token) have no optimizer state yet
_FULL_OPTIMIZER = StateDictOptions(full_state_dict=True, cpu_offload=True, strict=False)


class RunState:
    """Checkpointing of a run: the student and teacher (unwrapped), the optimizer, the grad scaler,
    the random generators and the count of skipped steps."""

    def __init__(self, *, student: nn.Module, teacher: nn.Module, optimizer: torch.optim.Optimizer,
                 scaler: torch.amp.GradScaler | None, info: ProcessInfo, output_dir: Path, keep_checkpoints: int,
                 recipe_data: dict[str, Any], registry: Registry) -> None:
        self.student, self.teacher, self.optimizer, self.scaler = student, teacher, optimizer, scaler
        self.info = info
        self.keep_checkpoints = keep_checkpoints
        self.registry = registry
        self.output_dir = output_dir
        self.nonfinite_steps = 0
        self.last_checkpoint: str | None = None
        self.resumed_from: str | None = None
        self._rng: dict[str, Any] | None = None
        if info.is_main:
            write_run_files(self.output_dir, recipe_data, registry)

    def _state(self) -> dict[str, Any]:
        rng = {"torch": torch.get_rng_state()}
        if torch.cuda.is_available() and self.info.device.type == "cuda":
            rng["cuda"] = torch.cuda.get_rng_state(self.info.device)
        state = {
            "student": get_model_state_dict(self.student, options=_FULL),
            "teacher": get_model_state_dict(self.teacher, options=_FULL),
            "optimizer": get_optimizer_state_dict(self.student, self.optimizer, options=_FULL),
            "rng": rng,
            "nonfinite_steps": self.nonfinite_steps,
            "world_size": self.info.world_size,
            "versions": versions(self.registry),
        }
        if self.scaler is not None:
            state["scaler"] = self.scaler.state_dict()
        return state

    def save(self, step: int) -> None:
        """Write the checkpoint of ``step`` (rank 0 writes; every rank takes part in gathering)."""
        state = self._state()
        if self.info.is_main:
            path = save_checkpoint(self.output_dir, step, state, self.keep_checkpoints)
            self.last_checkpoint = str(path)
        if distributed.is_distributed():
            torch.distributed.barrier()

    def restore_latest(self) -> int:
        """Load the newest readable checkpoint of the output directory, if any; return the step to start from.

        Newer checkpoints that cannot be read (truncated, corrupt) are skipped with a warning that
        names each file and why; :attr:`resumed_from` is the checkpoint loaded (``None``: from scratch).
        """
        payload, skipped = load_newest_readable(self.output_dir)
        if self.info.is_main:
            for reason in skipped:
                log.warning("resume: skipped an unreadable checkpoint, using the previous one: %s", reason)
        if payload is None:
            return 0
        path = payload["path"]
        try:
            set_model_state_dict(self.student, payload["student"], options=_FULL)
            set_model_state_dict(self.teacher, payload["teacher"], options=_FULL)
            set_optimizer_state_dict(self.student, self.optimizer, payload["optimizer"], options=_FULL_OPTIMIZER)
        except (RuntimeError, KeyError, ValueError) as exc:
            raise SSLKitError(f"{path} does not match this recipe's model (was the recipe changed since?): "
                              f"{str(exc).splitlines()[0]}") from None
        if self.scaler is not None and "scaler" in payload:
            self.scaler.load_state_dict(payload["scaler"])
        self.nonfinite_steps = int(payload.get("nonfinite_steps", 0))
        self._rng = payload.get("rng")
        self.last_checkpoint = self.resumed_from = path
        changed = version_differences(payload.get("versions", {}).get("plugins", {}), self.registry.providers)
        if changed and self.info.is_main:
            log.warning("plugin providers changed since the checkpoint: %s", "; ".join(changed))
        step = int(payload["step"])
        if self.info.is_main:
            log.info("resumed from %s at step %d (saved with %s process(es))", path, step,
                     payload.get("world_size", "?"))
        return step

    def restore_rng(self) -> None:
        """Restore the random-number generators of the loaded checkpoint (drop-path draws)."""
        if self._rng is None:
            return
        torch.set_rng_state(self._rng["torch"])
        if "cuda" in self._rng and self.info.device.type == "cuda":
            torch.cuda.set_rng_state(self._rng["cuda"], self.info.device)
