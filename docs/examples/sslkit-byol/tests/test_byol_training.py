"""The example recipe, shrunk (procedural images, a narrow ViT, 16-pixel crops), trains for real:
the predictor exists on the student only, the projector on both sides, and the teacher's
projector follows the student's by EMA."""

from __future__ import annotations

import math
from pathlib import Path

import torch

from sslkit.engine.checkpoint import load_checkpoint
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
