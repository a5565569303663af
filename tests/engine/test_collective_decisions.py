"""Two gloo processes decide together: a stop signal or a NaN that reaches one process only makes
both checkpoint and stop, or both skip the step, at the same step.

A process that decided alone would enter a collective (the gradient all-reduce, the checkpoint's
barrier) that the other never joins, and the run would hang: every run here has a deadline, so a
hang fails the test instead of blocking the suite.
"""

from __future__ import annotations

import os
import signal
import socket
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import Tensor

from sslkit import distributed
from sslkit.components import BuildContext, Loss, StepContext
from sslkit.engine.checkpoint import list_checkpoints
from sslkit.engine.trainer import NonFiniteLossError, Trainer
from sslkit.outputs import Output, StepInputs
from sslkit.params import param
from sslkit.recipe import load_recipe
from sslkit.testing import registered

pytestmark = pytest.mark.slow

WORLD = 2
DEADLINE_S = 240.0  # a normal run takes well under a minute; a hang is killed after this


@dataclass
class FaultParams:
    """Parameters of a loss that injects a fault into one process."""

    fault: Literal["sigterm", "nan"] = param("sigterm", "sigterm: the process signals itself; nan: the term is NaN.")
    rank: int = param(1, "The process the fault reaches.")
    steps: list[int] = param(doc="The steps at which it does.", default_factory=lambda: [1])


class FaultLoss(Loss):
    """Zero (connected to the student's CLS tokens), except on process ``rank`` at ``steps``: there it
    sends SIGTERM to its own process, or returns NaN."""

    def __init__(self, params: FaultParams, ctx: BuildContext) -> None:
        super().__init__()
        self.params = params
        self.inputs = {"cls": Output("cls", model="student", crops="global")}

    def forward(self, inputs: StepInputs, ctx: StepContext) -> Tensor:
        value = inputs["cls"].float().mean() * 0.0
        p = self.params
        if distributed.rank() == p.rank and ctx.step in p.steps:
            if p.fault == "sigterm":
                os.kill(os.getpid(), signal.SIGTERM)
            else:
                return value + float("nan")
        return value


def _worker(rank: int, port: int, recipe: str, overrides: list[str], out: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), WORLD_SIZE=str(WORLD), RANK=str(rank),
                      LOCAL_RANK=str(rank))
    torch.set_num_threads(1)
    try:
        with registered("loss", "fault_for_test", FaultLoss, FaultParams):
            trainer = Trainer(load_recipe(recipe, overrides), Path(out) / "run")
            try:
                result = trainer.fit()
                record: dict = {"step": result.step, "completed": result.completed}
            except NonFiniteLossError as exc:
                record = {"error": str(exc)}
            record["nonfinite_steps"] = trainer.state.nonfinite_steps
            record["center"] = trainer.parts.losses["dino"].center.clone()
            torch.save(record, Path(out) / f"rank{rank}.pt")
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _run_two_processes(recipe: Path, overrides: list[str], out: Path) -> list[dict]:
    """Train on 2 processes; fail (killing both) if they have not finished by the deadline."""
    context = mp.spawn(_worker, args=(_free_port(), str(recipe), overrides, str(out)), nprocs=WORLD, join=False)
    deadline = time.monotonic() + DEADLINE_S
    try:
        while not context.join(timeout=5.0):
            if time.monotonic() > deadline:
                pytest.fail(f"the {WORLD} processes were still running after {DEADLINE_S:.0f} s: they hung")
    finally:
        for process in context.processes:
            if process.is_alive():
                process.kill()
    return [torch.load(out / f"rank{rank}.pt") for rank in range(WORLD)]


def test_a_sigterm_on_one_process_stops_both_at_the_same_checkpoint(tmp_path, quickstart, tiny_overrides) -> None:
    overrides = [*tiny_overrides, "train.max_steps=6", "train.checkpoint_every=100",
                 "losses.fault={name: fault_for_test, fault: sigterm, rank: 1, steps: [1]}"]
    records = _run_two_processes(quickstart, overrides, tmp_path)
    # rank 1 signalled itself during step 1: both finish that step, save it and exit cleanly
    assert [(r.get("step"), r.get("completed")) for r in records] == [(2, False), (2, False)], records
    assert [p.name for p in list_checkpoints(tmp_path / "run")] == ["step_00000002.pt"]


def test_a_nan_on_one_process_is_skipped_then_stops_both(tmp_path, quickstart, tiny_overrides) -> None:
    overrides = [*tiny_overrides, "train.max_steps=6", "train.checkpoint_every=1", "train.max_nonfinite_steps=1",
                 "losses.fault={name: fault_for_test, fault: nan, rank: 1, steps: [1, 3]}"]
    records = _run_two_processes(quickstart, overrides, tmp_path)
    # step 1 is skipped by both (one skip allowed), step 2 trains on both, step 3 stops both with the error
    for rank, record in enumerate(records):
        assert "non-finite loss at step 3" in record.get("error", ""), (rank, record)
        assert record["nonfinite_steps"] == 2
    assert "fault=nan" in records[1]["error"]
    assert "fault (non-finite on another process)" in records[0]["error"]
    assert torch.equal(records[0]["center"], records[1]["center"]) and torch.isfinite(records[0]["center"]).all()
    assert [p.name for p in list_checkpoints(tmp_path / "run")][-1] == "step_00000003.pt"
