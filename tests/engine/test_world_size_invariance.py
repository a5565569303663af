"""Two processes (gloo, DDP or FSDP2) train exactly like one process with the same global batch.

Data order, crops, masks and crop selection depend only on (seed, step, global index); centering
and distributed KoLeo reduce over the global batch; gradients are averaged over processes.
What remains different is the order of floating-point reductions (gradient all-reduce, sums
split across processes), so weights agree to float32 rounding accumulated over 3 AdamW steps:
we allow 1e-5 absolute / 1e-4 relative, far below the ~1e-3 change one step makes (checked).
"""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from sslkit.engine.checkpoint import load_checkpoint
from sslkit.engine.trainer import Trainer
from sslkit.recipe import load_recipe

pytestmark = pytest.mark.slow


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _worker(rank: int, world: int, port: int, recipe: str, overrides: list[str], out: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), WORLD_SIZE=str(world), RANK=str(rank),
                      LOCAL_RANK=str(rank))
    torch.set_num_threads(1)
    try:
        Trainer(load_recipe(recipe, overrides), Path(out)).fit()
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()


def _overrides(tiny: list[str], batch: int, strategy: str) -> list[str]:
    return [*tiny, f"data.batch_size={batch}", f"train.strategy={strategy}", "train.max_steps=3", "train.log_every=1",
            "train.checkpoint_every=3", "losses.ibot={name: ibot, head: dino}",
            "losses.koleo={name: koleo, weight: 0.1, mode: distributed}", "data.dataset.size=48",
            "eval.at_end=true", "eval.train_data.size=100", "eval.test_data.size=50"]


@pytest.mark.parametrize("strategy", ["ddp", "fsdp2"])
def test_two_processes_equal_one_process(tmp_path, quickstart, tiny_overrides, strategy: str) -> None:
    single, double = tmp_path / "one", tmp_path / "two"
    mp.spawn(_worker, args=(1, _free_port(), str(quickstart), _overrides(tiny_overrides, 8, "single"), str(single)),
             nprocs=1)
    mp.spawn(_worker, args=(2, _free_port(), str(quickstart), _overrides(tiny_overrides, 4, strategy), str(double)),
             nprocs=2)
    a, b = load_checkpoint(single), load_checkpoint(double)
    assert a["step"] == b["step"] == 3
    initial = Trainer(load_recipe(quickstart, _overrides(tiny_overrides, 8, "single")), tmp_path / "init")
    start = {k: v.detach().clone() for k, v in initial.student.state_dict().items()}
    moved = 0.0
    for key, value in a["student"].items():
        torch.testing.assert_close(b["student"][key], value, atol=1e-5, rtol=1e-4)
        if value.is_floating_point():
            moved = max(moved, float((value - start[key]).abs().max()))
    for key, value in a["teacher"].items():
        torch.testing.assert_close(b["teacher"][key], value, atol=1e-5, rtol=1e-4)
    assert moved > 1e-4, "training did not move the weights: the comparison would be vacuous"
    # what the run logs is the global batch's loss, whatever the number of processes
    logged_one, logged_two = _logged(single), _logged(double)
    assert set(logged_one) == {1, 2, 3} and logged_one.keys() == logged_two.keys()
    for step, values in logged_one.items():
        assert values.keys() == logged_two[step].keys() and {"loss/dino", "loss/ibot", "loss/total"} <= values.keys()
        for key, value in values.items():
            assert logged_two[step][key] == pytest.approx(value, rel=1e-4, abs=1e-5), (step, key)
    # the final kNN ran on every process (under FSDP2 on a gathered copy) and saw the same teacher
    assert {"eval/knn_top1", "eval/knn_top5"} <= logged_one[3].keys()


def _logged(run_dir: Path) -> dict[int, dict[str, float]]:
    """``{step: {"loss/<term>" or "eval/<metric>": value}}`` from the run's metrics.jsonl."""
    logged: dict[int, dict[str, float]] = {}
    for line in (run_dir / "metrics.jsonl").read_text().splitlines():
        record = json.loads(line)
        values = {k: v for k, v in record.items() if k.startswith(("loss/", "eval/"))}
        if values and "step" in record:
            logged.setdefault(record["step"], {}).update(values)
    return logged
