"""A checkpoint saved on 2 processes (DDP or FSDP2) resumes on 1, 2 and 4 processes and under the other strategy.

Each resumed run starts from a copy of the step-2 checkpoint of a 4-step run (as if that run
had been killed after it) and must (1) really start there: it reports start step 2, 2 steps run
and the checkpoint it loaded, and its metrics.jsonl (not copied) logs steps 3 and 4 only; and
(2) end where the uninterrupted 4-step run ends:

- same world size and strategy (ddp -> ddp, fsdp2 -> fsdp2): bit for bit, like the
  single-process exact-resume guarantee;
- another world size or strategy (ddp 2 -> 1, ddp 2 -> 4, ddp -> fsdp2, fsdp2 2 -> 1): to float32
  rounding (1e-5 absolute / 1e-4 relative, as in test_world_size_invariance), since the gradient
  all-reduce and the sums split across processes add in another order. The global batch is
  the same (8 images: ``data.batch_size`` = 8 / world size).
"""

from __future__ import annotations

import json
import os
import shutil
import socket
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from sslkit.engine.checkpoint import list_checkpoints, load_checkpoint
from sslkit.engine.trainer import Trainer
from sslkit.recipe import load_recipe

pytestmark = pytest.mark.slow

GLOBAL_BATCH = 8
STEPS = 4
RESUME_AT = 2


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _worker(rank: int, world: int, port: int, recipe: str, overrides: list[str], out: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), WORLD_SIZE=str(world), RANK=str(rank),
                      LOCAL_RANK=str(rank))
    torch.set_num_threads(1)
    try:
        result = Trainer(load_recipe(recipe, overrides), Path(out)).fit()
        if rank == 0:
            summary = {"start_step": result.start_step, "steps_run": result.steps_run,
                       "resumed_from": result.resumed_from}
            (Path(out) / "result.json").write_text(json.dumps(summary), encoding="utf-8")
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()


class Runs:
    """Trains runs of the shared tiny recipe into ``root/<name>`` with a given world size and strategy."""

    def __init__(self, root: Path, recipe: Path, tiny: list[str]) -> None:
        self.root, self.recipe, self.tiny = root, recipe, tiny
        load_recipe(recipe, self.overrides(1, "single"))  # loads the plugins once, before the forks

    def overrides(self, world: int, strategy: str) -> list[str]:
        return [*self.tiny, f"data.batch_size={GLOBAL_BATCH // world}", f"train.strategy={strategy}",
                f"train.max_steps={STEPS}", f"train.checkpoint_every={RESUME_AT}", "train.keep_checkpoints=10",
                "losses.ibot={name: ibot, head: dino}", "losses.koleo={name: koleo, weight: 0.1, mode: distributed}",
                "data.dataset.size=48"]

    def train(self, name: str, world: int, strategy: str) -> Path:
        out = self.root / name
        # fork: the children inherit the imported modules (spawning re-imports torch in each)
        mp.start_processes(_worker, args=(world, _free_port(), str(self.recipe), self.overrides(world, strategy),
                                          str(out)), nprocs=world, start_method="fork")
        return out

    def resume(self, source: str, name: str, world: int, strategy: str) -> Path:
        """Copy ``source``'s step-2 checkpoint into a fresh directory and train it to the end there."""
        out = self.root / name
        (out / "checkpoints").mkdir(parents=True)
        checkpoint = next(p for p in list_checkpoints(self.root / source) if p.stem.endswith(f"_{RESUME_AT:08d}"))
        shutil.copy(checkpoint, out / "checkpoints" / checkpoint.name)
        return self.train(name, world, strategy)


def logged_steps(run: Path) -> list[int]:
    lines = (run / "metrics.jsonl").read_text(encoding="utf-8").splitlines()
    return sorted({json.loads(line)["step"] for line in lines if "loss/total" in json.loads(line)})


def assert_same_weights(a: Path, b: Path, exact: bool) -> None:
    first, second = load_checkpoint(a), load_checkpoint(b)
    assert first["step"] == second["step"] == STEPS
    for part in ("student", "teacher"):
        assert first[part].keys() == second[part].keys()
        for key, value in first[part].items():
            if exact:
                assert torch.equal(second[part][key], value), f"{part}.{key} differs"
            else:
                torch.testing.assert_close(second[part][key], value, atol=1e-5, rtol=1e-4, msg=f"{part}.{key}")
    moments = [s["exp_avg"] for s in first["optimizer"]["state"].values() if "exp_avg" in s]
    assert moments, "the comparison needs optimizer state"
    for key, state in first["optimizer"]["state"].items():
        for name, value in state.items():
            other = second["optimizer"]["state"][key][name]
            if exact:
                assert torch.equal(other, value), f"optimizer {key}.{name} differs"
            else:
                torch.testing.assert_close(other, value, atol=1e-5, rtol=1e-4, msg=f"optimizer {key}.{name}")


def test_checkpoints_resume_on_other_world_sizes_and_strategies(tmp_path, quickstart, tiny_overrides) -> None:
    runs = Runs(tmp_path, quickstart, tiny_overrides)
    ddp = runs.train("ddp", 2, "ddp")
    fsdp2 = runs.train("fsdp2", 2, "fsdp2")
    assert logged_steps(ddp) == logged_steps(fsdp2) == [1, 2, 3, 4]
    resumed = {
        "ddp_to_ddp": runs.resume("ddp", "ddp_to_ddp", 2, "ddp"),
        "fsdp2_to_fsdp2": runs.resume("fsdp2", "fsdp2_to_fsdp2", 2, "fsdp2"),
        "ddp_to_one": runs.resume("ddp", "ddp_to_one", 1, "single"),
        "ddp_to_four": runs.resume("ddp", "ddp_to_four", 4, "ddp"),
        "ddp_to_fsdp2": runs.resume("ddp", "ddp_to_fsdp2", 2, "fsdp2"),
        "fsdp2_to_one": runs.resume("fsdp2", "fsdp2_to_one", 1, "single"),
    }
    for name, run in resumed.items():
        assert logged_steps(run) == [3, 4], f"{name} did not start from the step-2 checkpoint"
        result = json.loads((run / "result.json").read_text())
        assert (result["start_step"], result["steps_run"]) == (RESUME_AT, STEPS - RESUME_AT), (name, result)
        assert result["resumed_from"].endswith(f"step_{RESUME_AT:08d}.pt"), (name, result)
    assert_same_weights(ddp, resumed["ddp_to_ddp"], exact=True)
    assert_same_weights(fsdp2, resumed["fsdp2_to_fsdp2"], exact=True)
    for name in ("ddp_to_one", "ddp_to_four", "ddp_to_fsdp2"):
        assert_same_weights(ddp, resumed[name], exact=False)
    assert_same_weights(fsdp2, resumed["fsdp2_to_one"], exact=False)
