"""The method inside real training runs (``sslkit.testing.run_tiny_training``): a few CPU steps with the
student dropping (or replacing) the masked patches, the predictor (read by the ``latent_predictions``
producer, named in its request's ``modules``) trained on the student only, and no projection head."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest
import torch

from sslkit.engine.checkpoint import load_checkpoint
from sslkit.testing import run_tiny_training

RECIPE = Path(__file__).resolve().parents[1] / "recipes" / "latent_mim_cifar10.yaml"


def tiny(masking: str) -> dict[str, Any]:
    """The CIFAR recipe's method on procedural 16 px images, ViT with 2 blocks of width 32."""
    return {
        "run": {"seed": 0, "device": "cpu", "precision": "fp32"},
        "data": {"dataset": {"name": "synthetic", "size": 32, "image_size": 32, "seed": 0},
                 "augmentation": {"name": "kornia_multicrop", "n_global": 2, "n_local": 0, "global_crop_size": 16,
                                  "canvas_size": 32},
                 "batch_size": 4, "num_workers": 0},
        "model": {"backbone": {"name": "vit", "size": "tiny", "embed_dim": 32, "depth": 2, "num_heads": 2,
                               "patch_size": 4, "img_size": 16, "drop_path_rate": 0.0},
                  "student_modules": {"predictor": {"name": "latent_predictor", "dim": 16, "depth": 1,
                                                    "num_heads": 2}}},
        "losses": {"latent": {"name": "latent_mim", "top_k": 2, "student_masking": masking, "cls_weight": 0.1}},
        "masking": {"crop_policy": {"name": "random_fraction", "fraction": 1.0},
                    "masker": {"name": "block", "min_ratio": 0.6, "max_ratio": 0.75}},
        "optim": {"base_lr": 0.001, "lr_scaling": "none", "warmup_epochs": 0.0},
        "teacher": {"momentum": 0.9},
        "train": {"max_steps": 2, "epoch_length": 10, "checkpoint_every": 2, "log_every": 1},
        "eval": {"at_end": False},
    }


@pytest.mark.parametrize("masking", ["drop", "replace"])
def test_trains_with_a_student_only_predictor(tmp_path: Path, masking: str) -> None:
    result = run_tiny_training(tmp_path, recipe=tiny(masking), steps=2)
    assert result.completed and result.step == 2
    assert math.isfinite(result.final_losses["latent"])
    checkpoint = load_checkpoint(result.output_dir)
    student, teacher = checkpoint["student"], checkpoint["teacher"]
    assert any(k.startswith("student_modules.predictor.") for k in student)
    assert not any("predictor" in k for k in teacher), "the predictor exists on the student only"
    # the teacher is the EMA of the student: close to it, not equal, after two updates of a trained student
    moved = student["backbone.blocks.0.attn.qkv.weight"] - teacher["backbone.blocks.0.attn.qkv.weight"]
    assert moved.abs().max() > 0
    # drop never feeds the backbone's mask token (it stays frozen at its initial zeros); replace trains it
    assert torch.equal(student["backbone.mask_token"], teacher["backbone.mask_token"]) == (masking == "drop")


def test_the_cifar_recipe_validates() -> None:
    from sslkit.recipe import load_recipe

    resolved = load_recipe(RECIPE, ["data.dataset.path=unused.tar", "eval.train_data.path=unused.tar",
                                    "eval.test_data.path=unused.tar"])
    assert resolved.recipe.losses["latent"]["name"] == "latent_mim"
