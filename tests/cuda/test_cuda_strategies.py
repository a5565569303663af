"""DDP and FSDP2 on the NCCL backend with one process (``mp.spawn`` of world size 1) train like a
single process without a process group: same teacher weights after three fp32 steps."""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch.distributed.fsdp import FSDPModule
from torch.nn.parallel import DistributedDataParallel

from sslkit.engine.checkpoint import load_checkpoint
from sslkit.engine.trainer import Trainer
from sslkit.recipe import load_recipe

pytestmark = [pytest.mark.cuda, pytest.mark.slow]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _worker(rank: int, port: int, recipe: str, overrides: list[str], out: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), WORLD_SIZE="1", RANK="0", LOCAL_RANK="0")
    try:
        trainer = Trainer(load_recipe(recipe, overrides), Path(out))
        trainer.fit()
        model = trainer.model
        facts = {"strategy": trainer.strategy, "backend": dist.get_backend(),
                 "ddp": isinstance(model, DistributedDataParallel), "fsdp": isinstance(model, FSDPModule)}
        (Path(out) / "facts.json").write_text(json.dumps(facts), encoding="utf-8")
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()


@pytest.mark.parametrize("strategy", ["ddp", "fsdp2"])
def test_one_nccl_process_equals_a_single_process(tmp_path: Path, quickstart: Path, tiny_cuda: list[str],
                                                  strategy: str) -> None:
    overrides = [*tiny_cuda, "run.precision=fp32"]
    Trainer(load_recipe(quickstart, [*overrides, "train.strategy=single"]), tmp_path / "single").fit()
    wrapped = tmp_path / strategy
    mp.spawn(_worker, args=(_free_port(), str(quickstart), [*overrides, f"train.strategy={strategy}"], str(wrapped)),
             nprocs=1)
    facts = json.loads((wrapped / "facts.json").read_text(encoding="utf-8"))
    assert facts["strategy"] == strategy and facts["backend"] == "nccl"
    assert (facts["ddp"], facts["fsdp"]) == (strategy == "ddp", strategy == "fsdp2")
    one, other = load_checkpoint(tmp_path / "single"), load_checkpoint(wrapped)
    assert one["step"] == other["step"] == 3
    for key, value in one["teacher"].items():
        torch.testing.assert_close(other["teacher"][key], value, atol=1e-4, rtol=1e-4)
