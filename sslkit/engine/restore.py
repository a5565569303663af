"""Rebuilding a trained backbone from a checkpoint and the recipe saved beside it."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import yaml

from sslkit.components import Backbone, BuildContext
from sslkit.engine.checkpoint import load_checkpoint, resolve_checkpoint
from sslkit.engine.run_dir import RECIPE_FILE
from sslkit.errors import SSLKitError
from sslkit.recipe import ResolvedRecipe, load_resolved


def run_dir_of(checkpoint: Path) -> Path:
    """The run directory that holds ``checkpoint`` (``RUN/checkpoints/step_*.pt``)."""
    return checkpoint.parent.parent if checkpoint.parent.name == "checkpoints" else checkpoint.parent


def load_backbone(path: Path, which: str = "auto") -> tuple[Backbone, ResolvedRecipe, int]:
    """The ``which`` (teacher, student, or auto: the trained model, i.e. the EMA teacher, or the student
    of a distillation run whose teacher is frozen) backbone of a checkpoint file or run directory,
    with the run's resolved recipe and the checkpoint's step."""
    if which not in ("auto", "teacher", "student"):
        raise SSLKitError(f"--which must be auto, teacher or student, got {which!r}")
    checkpoint = resolve_checkpoint(Path(path))
    recipe_path = run_dir_of(checkpoint) / RECIPE_FILE
    if not recipe_path.exists():
        raise SSLKitError(f"{checkpoint}: the run's {RECIPE_FILE} is missing (expected at {recipe_path})")
    data = yaml.safe_load(recipe_path.read_text(encoding="utf-8"))
    resolved = load_resolved(data, str(recipe_path))
    payload = load_checkpoint(checkpoint)
    frozen = resolved.recipe.teacher.mode == "frozen"
    if which == "auto":
        which = "student" if frozen else "teacher"
    own_teacher = frozen and which == "teacher" and resolved.recipe.teacher.backbone is not None
    spec = resolved.spec("teacher.backbone" if own_teacher else "model.backbone")
    augmentation = resolved.recipe.data.augmentation
    ctx = BuildContext(seed=resolved.recipe.run.seed, global_crop_size=augmentation.get("global_crop_size"),
                       local_crop_size=augmentation.get("local_crop_size"))
    params = spec.params
    # the checkpoint holds the trained weights: do not reload (or download) the starting weights
    overrides = {k: v for k, v in (("init_from", None), ("pretrained", False)) if hasattr(params, k)}
    backbone: Backbone = spec.component.factory(dataclasses.replace(params, **overrides), ctx)
    prefix = "backbone."
    weights = {k[len(prefix):]: v for k, v in payload[which].items() if k.startswith(prefix)}
    missing, unexpected = backbone.load_state_dict(weights, strict=False)
    if missing or unexpected:
        raise SSLKitError(f"{checkpoint}: {which} backbone weights do not match the recipe's backbone "
                          f"(missing {missing[:5]}, unexpected {unexpected[:5]})")
    backbone.eval()
    return backbone, resolved, int(payload["step"])
