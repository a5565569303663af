"""Multi-stage recipes: ``sslkit train`` runs the stages in order, each later stage starting from the
previous one's weights (position embeddings resampled to a larger crop), finished stages are skipped,
and every stage is validated before the first trains."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import yaml

from sslkit.cli.main import main
from sslkit.engine.checkpoint import load_checkpoint, resolve_checkpoint
from sslkit.engine.trainer import Trainer
from sslkit.errors import RecipeError
from sslkit.recipe.stages import load_stages
from sslkit.testing import tiny_recipe, write_recipe

RECIPES = Path(__file__).resolve().parents[2] / "recipes"


def staged_recipe(tmp_path: Path, high_changes: dict[str, object] | None = None) -> Path:
    recipe = tiny_recipe()
    recipe["train"]["max_steps"] = 2
    recipe["train"]["checkpoint_every"] = 2
    recipe["stages"] = [
        {"name": "low"},
        {"name": "high", "changes": high_changes or {
            "data": {"augmentation": {"global_crop_size": 24, "canvas_size": 32}},
            "model": {"backbone": {"img_size": 24}},
            "optim": {"base_lr": 0.0001}}},
    ]
    return write_recipe(tmp_path / "staged.yaml", recipe)


def test_each_stage_starts_from_the_previous_one(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    recipe, out = staged_recipe(tmp_path), tmp_path / "runs"
    assert main(["train", str(recipe), "-o", str(out)]) == 0
    low = load_checkpoint(resolve_checkpoint(out / "low"))
    assert load_checkpoint(resolve_checkpoint(out / "high"))["step"] == 2
    # stage 2's model before its first step: the previous stage's weights, pos_embed resampled to 6x6 patches
    stage = load_stages(recipe, [], out)[1]
    assert stage.resolved.recipe.init_from == str(out / "low")
    trainer = Trainer(stage.resolved, tmp_path / "probe")
    for side, module in (("student", trainer.student), ("teacher", trainer.teacher)):
        state = module.state_dict()
        for key, value in low[side].items():
            if key == "backbone.pos_embed":
                assert state[key].shape[1] == 1 + 36 and value.shape[1] == 1 + 16
                assert torch.equal(state[key][:, 0], value[:, 0])  # the CLS position is kept
            else:
                assert torch.equal(state[key], value), f"{side} {key} was not carried over"
    report = yaml.safe_load((tmp_path / "probe" / "stage_init_report.json").read_text())
    assert "pos_embed" in report["student"]["reshaped"] and report["step"] == 2
    capsys.readouterr()
    assert main(["train", str(recipe), "-o", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "stage low: already finished" in printed and "stage high: already finished" in printed


def test_a_bad_later_stage_fails_before_anything_trains(tmp_path: Path) -> None:
    recipe, out = staged_recipe(tmp_path, high_changes={"optim": {"base_lrr": 0.1}}), tmp_path / "runs"
    with pytest.raises(RecipeError, match="base_lrr"):
        load_stages(recipe, [], out)
    assert main(["train", str(recipe), "-o", str(out)]) != 0
    assert not (out / "low").exists()


def test_a_stage_cannot_change_the_heads(tmp_path: Path) -> None:
    recipe = staged_recipe(tmp_path, high_changes={"model": {"heads": {"dino": {"out_dim": 32}}}})
    out = tmp_path / "runs"
    assert main(["train", str(recipe), "-o", str(out)]) != 0  # the error is printed, the run refused
    assert not (out / "high" / "checkpoints").exists()


def test_the_shipped_staged_recipes_validate_every_stage(tmp_path: Path) -> None:
    staged = [p for p in RECIPES.rglob("*.yaml") if "stages" in (yaml.safe_load(p.read_text()) or {})]
    assert staged, "a staged recipe ships (the DINOv2 high-resolution adaptation)"
    for path in staged:
        stages = load_stages(path, ["data.dataset={name: synthetic}"], tmp_path)  # ImageNet recipes name no folder
        assert len(stages) >= 2 and stages[1].resolved.recipe.init_from == str(tmp_path / stages[0].name)
