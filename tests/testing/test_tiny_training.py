"""A few real CPU training steps with a component under test: the tiny recipe, composition of
the test's changes, registration through the fixture, resuming."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from sslkit.components import BuildContext, Loss, Output, StepContext, StepInputs
from sslkit.engine.checkpoint import list_checkpoints
from sslkit.params import param
from sslkit.recipe import load_resolved
from sslkit.testing import assert_resumed, run_tiny_training
from sslkit.testing import tiny_recipe as make_tiny_recipe


@dataclass
class PatchCosineParams:
    """Parameters of a test loss."""

    scale: float = param(1.0, "Multiplier of the loss.", gt=0.0)


class PatchCosineLoss(Loss):
    """1 - cosine similarity between student and teacher patch tokens, times ``scale``."""

    def __init__(self, params: PatchCosineParams, ctx: BuildContext) -> None:
        super().__init__()
        self.params = params
        self.inputs = {"student": Output("patches", model="student", crops="global"),
                       "teacher": Output("patches", model="teacher", crops="global")}

    def forward(self, inputs: StepInputs, ctx: StepContext) -> torch.Tensor:
        similarity = F.cosine_similarity(inputs["student"], inputs["teacher"].detach(), dim=-1)
        return (1 - similarity).mean() * self.params.scale


def test_tiny_recipe_is_a_valid_small_cpu_recipe(tiny_recipe) -> None:
    resolved = load_resolved(tiny_recipe, "tiny")
    r = resolved.recipe
    assert r.run.device == "cpu" and r.data.num_workers == 0 and r.eval.train_data is None
    assert resolved.spec("model.backbone").params.patch_size == 4
    assert resolved.spec("data.augmentation").params.n_local == 2
    assert resolved.spec("model.heads.dino").params.out_dim == 64
    tiny_recipe["data"]["batch_size"] = 1
    assert make_tiny_recipe()["data"]["batch_size"] == 8  # every call returns a fresh copy


def test_a_registered_loss_trains_next_to_dino(tmp_path, sslkit_registry) -> None:
    sslkit_registry.register("loss", "patch_cosine_for_test", PatchCosineLoss, PatchCosineParams)
    result = run_tiny_training(tmp_path, losses={"mine": {"name": "patch_cosine_for_test", "scale": 2.0}}, steps=2)
    assert result.completed and result.step == 2
    assert set(result.final_losses) >= {"dino", "mine", "total"}
    assert math.isfinite(result.final_losses["mine"]) and result.final_losses["mine"] > 0
    layer = (tmp_path / "tiny_recipe.yaml").read_text()
    assert "patch_cosine_for_test" in layer and "base:" in layer


def test_null_replaces_the_dino_loss_and_overrides_apply(tiny_training, sslkit_registry) -> None:
    sslkit_registry.register("loss", "patch_cosine_for_test", PatchCosineLoss, PatchCosineParams)
    result = tiny_training(losses={"dino": None, "mine": {"name": "patch_cosine_for_test"}}, steps=1,
                           overrides=["data.batch_size=2", "losses.mine.weight=0.5"])
    assert set(result.final_losses) == {"mine", "total"}
    assert result.final_losses["total"] == 0.5 * result.final_losses["mine"]


def test_calling_again_with_more_steps_resumes(tmp_path) -> None:
    run_tiny_training(tmp_path, steps=2)
    result = run_tiny_training(tmp_path, steps=3)
    assert result.step == 3 and result.completed
    assert_resumed(result, from_step=2, steps_run=1)
    assert [p.name for p in list_checkpoints(tmp_path / "run")] == ["step_00000002.pt", "step_00000003.pt"]
