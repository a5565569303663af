"""The example recipe, shrunk (procedural images, a narrow ViT, 16-pixel crops), trains for real:
the predictor exists on the student only, the projector on both sides, and the teacher's
projector follows the student's by EMA; two DDP processes train like one process holding the
whole batch (the projector's batch statistics are taken over all processes)."""

from __future__ import annotations

import math
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
from sslkit.testing import run_tiny_training

RECIPE = Path(__file__).resolve().parents[1] / "recipes" / "byol_cifar10.yaml"
SHRINK = [
    "data.dataset={name: synthetic, size: 32, image_size: 32, seed: 0}",
    "data.batch_size=4", "data.num_workers=0",
    "data.augmentation.global_crop_size=16",
    "model.backbone.embed_dim=32", "model.backbone.depth=1", "model.backbone.num_heads=2",
    "model.backbone.img_size=16",
    "model.heads.projector.hidden_dim=32", "model.heads.projector.out_dim=16",
    "model.student_modules.predictor.hidden_dim=32", "model.student_modules.predictor.out_dim=16",
    "run.precision=fp32", "run.device=cpu", "train.log_every=1",
    "eval.at_start=false", "eval.at_end=false",
]


def test_the_example_recipe_trains(tmp_path: Path) -> None:
    result = run_tiny_training(tmp_path, recipe=RECIPE, overrides=SHRINK, steps=3)
    assert result.completed and result.step == 3
    assert set(result.final_losses) >= {"byol"}
    assert all(math.isfinite(v) for v in result.final_losses.values())
    assert 0.0 <= result.final_losses["byol"] <= 8.0  # 2 views x (2 - 2 cos), cos in [-1, 1]

    checkpoint = load_checkpoint(result.output_dir)
    student, teacher = checkpoint["student"], checkpoint["teacher"]
    assert any(k.startswith("student_modules.predictor.") for k in student)
    assert not any("predictor" in k for k in teacher), "the predictor must exist on the student only"
    projector = [k for k in teacher if k.startswith("heads.projector.")]
    assert projector and all(k in student for k in projector)
    assert any(not torch.equal(student[k], teacher[k]) for k in projector), "the teacher is an EMA, not a copy"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _train(rank: int, world: int, port: int, overrides: list[str], out: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), WORLD_SIZE=str(world), RANK=str(rank),
                      LOCAL_RANK=str(rank))
    torch.set_num_threads(1)
    try:
        Trainer(load_recipe(RECIPE, overrides), Path(out)).fit()
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()


def _overrides(batch: int, strategy: str) -> list[str]:
    return [*SHRINK, f"data.batch_size={batch}", f"train.strategy={strategy}", "train.max_steps=2",
            "train.checkpoint_every=2", "optim.warmup_epochs=0", "optim.eps=0.001"]


@pytest.mark.slow
def test_two_ddp_processes_train_like_one(tmp_path: Path) -> None:
    """Same global batch of 8: one process, or two DDP processes of 4 images each. Weights agree to
    float32 rounding (different reduction order), far below what a step changes (checked). AdamW's
    eps is raised to 1e-3 so that parameters whose true gradient is zero (the attention's key bias:
    softmax ignores it) do not turn rounding noise into full-size steps of random sign."""
    one, two = tmp_path / "one", tmp_path / "two"
    mp.spawn(_train, args=(1, _free_port(), _overrides(8, "single"), str(one)), nprocs=1)
    mp.spawn(_train, args=(2, _free_port(), _overrides(4, "ddp"), str(two)), nprocs=2)
    a, b = load_checkpoint(one), load_checkpoint(two)
    assert a["step"] == b["step"] == 2
    initial = Trainer(load_recipe(RECIPE, _overrides(8, "single")), tmp_path / "init").student.state_dict()
    moved = max(float((v - initial[k]).abs().max()) for k, v in a["student"].items() if v.is_floating_point())
    assert moved > 1e-4, "training did not move the weights: the comparison would be vacuous"
    differ = {f"{part}.{key}": float((b[part][key] - value).abs().max())
              for part in ("student", "teacher") for key, value in a[part].items()
              if value.is_floating_point() and not torch.allclose(b[part][key], value, atol=1e-5, rtol=1e-4)}
    assert not differ, f"two processes trained differently from one (max abs difference): {differ}"
