"""Gram anchoring inside real training runs: the example recipe next to the DINOv2 losses, and a
resumed run that equals an uninterrupted one (same Gram teacher, same refresh schedule)."""

from __future__ import annotations

import math
from pathlib import Path

import torch

from sslkit.engine.checkpoint import load_checkpoint
from sslkit.testing import assert_resumed, run_tiny_training

RECIPE = Path(__file__).resolve().parents[1] / "recipes" / "gram_tiny.yaml"
TEACHER_PREFIX = "losses.gram.gram_teacher."


def gram_state(run_dir: Path) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """The Gram teacher's weights (and the student's) in the run's latest checkpoint."""
    student = load_checkpoint(run_dir)["student"]
    return {k: v for k, v in student.items() if k.startswith(TEACHER_PREFIX)}, student


def test_example_recipe_trains_with_the_dinov2_losses(tmp_path: Path) -> None:
    overrides = ["data.batch_size=4", "data.num_workers=0", "data.augmentation.n_local=2", "eval.at_start=false",
                 "eval.at_end=false", "losses.gram.start_step=1", "losses.gram.refresh_every=2"]
    result = run_tiny_training(tmp_path, recipe=RECIPE, overrides=overrides, steps=3)
    assert result.completed and result.step == 3
    assert {"dino", "ibot", "koleo", "gram"} <= set(result.final_losses)
    assert all(math.isfinite(v) for v in result.final_losses.values())
    teacher, student = gram_state(result.output_dir)
    assert teacher, "the Gram teacher must be saved in the checkpoint"
    assert int(student["losses.gram.last_refresh"]) == 1  # snapshot at step 1; the next refresh is due at 3


def test_a_resumed_run_equals_an_uninterrupted_one_bit_for_bit(tmp_path: Path) -> None:
    """Snapshot at step 1, refreshes every 2 steps: the run resumed from its step-2 checkpoint must
    use the saved snapshot at step 2 and refresh at step 3, exactly like the uninterrupted run."""
    gram = {"gram": {"name": "gram_anchoring", "weight": 1.0, "start_step": 1, "refresh_every": 2}}
    every_two = ["train.checkpoint_every=2"]
    straight = run_tiny_training(tmp_path / "a", losses=gram, steps=4, overrides=every_two)
    interrupted = run_tiny_training(tmp_path / "b", losses=gram, steps=4, overrides=every_two).output_dir
    (interrupted / "checkpoints" / "step_00000004.pt").unlink()  # as if killed after the step-2 checkpoint
    resumed = run_tiny_training(tmp_path / "b", losses=gram, steps=4, overrides=every_two)
    assert resumed.step == 4
    assert_resumed(resumed, from_step=2, steps_run=2)
    first, second = load_checkpoint(straight.output_dir), load_checkpoint(resumed.output_dir)
    assert any(k.startswith(TEACHER_PREFIX) for k in second["student"])
    assert int(second["student"]["losses.gram.last_refresh"]) == 3
    for part in ("student", "teacher"):
        assert first[part].keys() == second[part].keys()
        for key in first[part]:
            assert torch.equal(first[part][key], second[part][key]), f"{part}.{key} differs after resuming"
