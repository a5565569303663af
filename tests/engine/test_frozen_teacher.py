"""Distillation with ``teacher.mode: frozen``: the teacher is built from its own (wider) backbone and its
heads at its own width, loaded from an sslkit run with a report, never updated, and the student trains
against it; the losses and the plan are the EMA run's."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from sslkit.engine.checkpoint import load_checkpoint, resolve_checkpoint
from sslkit.errors import RecipeError, SSLKitError
from sslkit.testing import run_tiny_training, tiny_recipe

TEACHER_BACKBONE = {"name": "vit", "size": "tiny", "embed_dim": 48, "depth": 2, "num_heads": 2, "patch_size": 4,
                    "img_size": 16, "drop_path_rate": 0.0}
STUDENT_BACKBONE = {**TEACHER_BACKBONE, "embed_dim": 32}


def teacher_run(tmp_path: Path) -> Path:
    """A tiny EMA run whose teacher becomes the frozen teacher."""
    recipe = tiny_recipe()
    recipe["model"]["backbone"] = TEACHER_BACKBONE
    run_tiny_training(tmp_path / "teacher", recipe=recipe, steps=2)
    return tmp_path / "teacher" / "run"


def distill_changes(source: Path, **teacher: object) -> dict[str, object]:
    return {"model": {"backbone": STUDENT_BACKBONE},
            "teacher": {"mode": "frozen", "backbone": TEACHER_BACKBONE, "init_from": str(source), **teacher}}


def state(run: Path, which: str) -> dict[str, torch.Tensor]:
    return load_checkpoint(resolve_checkpoint(run))[which]


def test_the_frozen_teacher_is_loaded_reported_and_never_updated(tmp_path: Path) -> None:
    source = teacher_run(tmp_path)
    pretrained = state(source, "teacher")
    result = run_tiny_training(tmp_path / "student", changes=distill_changes(source), steps=3)
    run = result.output_dir
    teacher = state(run, "teacher")
    assert teacher.keys() == pretrained.keys()  # the teacher's own backbone (48 wide) and heads at its width
    assert all(torch.equal(teacher[k], pretrained[k]) for k in teacher), "the frozen teacher changed"
    assert teacher["backbone.cls_token"].shape[-1] == 48
    student = state(run, "student")
    assert student["backbone.cls_token"].shape[-1] == 32 and student["heads.dino.mlp.0.weight"].shape[-1] == 32
    report = json.loads((run / "teacher_init_report.json").read_text())
    assert report["tensor_fraction"] == 1.0 and report["kind"] == "sslkit"
    assert not (run / "init_report.json").exists()  # the student started from scratch


def test_recipe_errors(tmp_path: Path) -> None:
    with pytest.raises(RecipeError, match=r"teacher\.init_from"):
        run_tiny_training(tmp_path / "a", changes={"teacher": {"mode": "frozen"}}, steps=1)
    with pytest.raises(RecipeError, match=r"only with teacher\.mode: frozen"):
        run_tiny_training(tmp_path / "b", changes={"teacher": {"backbone": TEACHER_BACKBONE}}, steps=1)
    with pytest.raises(RecipeError, match=r"no head .ibot. in model\.heads"):
        run_tiny_training(tmp_path / "c", changes=distill_changes(tmp_path, heads={"ibot": {"name": "dino"}}), steps=1)


def test_a_source_without_the_heads_is_refused(tmp_path: Path) -> None:
    source = teacher_run(tmp_path)
    exported = tmp_path / "teacher.safetensors"
    from safetensors.torch import save_file

    backbone = {k[len("backbone."):]: v.contiguous() for k, v in state(source, "teacher").items()
                if k.startswith("backbone.")}
    save_file(backbone, str(exported))
    with pytest.raises(SSLKitError, match="holds a backbone only"):
        run_tiny_training(tmp_path / "s", changes=distill_changes(exported), steps=1)
