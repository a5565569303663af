"""A few training steps on the GPU under bf16 autocast and under fp16 with the gradient scaler."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from sslkit.engine.trainer import Trainer
from sslkit.recipe import load_recipe

pytestmark = pytest.mark.cuda


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_steps_on_cuda_train_with_finite_losses(tmp_path: Path, quickstart: Path, tiny_cuda: list[str],
                                                precision: str) -> None:
    trainer = Trainer(load_recipe(quickstart, [*tiny_cuda, f"run.precision={precision}"]), tmp_path)
    assert trainer.info.device.type == "cuda" and all(p.is_cuda for p in trainer.student.parameters())
    start = {k: v.detach().clone() for k, v in trainer.teacher.state_dict().items()}
    result = trainer.fit()
    assert result.completed and result.step == 3
    assert result.final_losses and all(math.isfinite(v) for v in result.final_losses.values())
    moved = max(float((v - start[k]).abs().max()) for k, v in trainer.teacher.state_dict().items()
                if v.is_floating_point())
    assert moved > 0, "three steps left the teacher unchanged"
    if precision == "fp16":
        assert isinstance(trainer.scaler, torch.amp.GradScaler)
        assert math.isfinite(trainer.scaler.get_scale()) and trainer.scaler.get_scale() > 0
    else:
        assert trainer.scaler is None
