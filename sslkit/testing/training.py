"""A few real training steps on the CPU, in-process, with the component under test in the recipe.

:func:`tiny_recipe` is a complete recipe small enough for a unit test: procedural images
(no download), ViT-tiny with 4-pixel patches on 16-pixel global crops (16 patch tokens) and
two 8-pixel local crops (4 patch tokens), a DINO head with 64 prototypes, the DINO loss, 8 images per step,
no data-loader workers, no evaluation. :func:`run_tiny_training` composes it with the changes
a test needs exactly as ``sslkit train`` composes a recipe (``base:`` layer, then
``KEY=VALUE`` overrides), validates it against every plugin's schema and trains it.
:func:`assert_resumed` checks that a run continued from a checkpoint instead of starting over
(training is deterministic, so equal final weights alone do not show that it resumed).
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

if TYPE_CHECKING:
    from sslkit.engine.trainer import TrainResult

_TINY_RECIPE: dict[str, Any] = {
    "run": {"seed": 0, "device": "cpu", "precision": "fp32"},
    "data": {
        "dataset": {"name": "synthetic", "size": 64, "image_size": 32, "seed": 0},
        "augmentation": {"name": "kornia_multicrop", "n_local": 2, "global_crop_size": 16, "local_crop_size": 8,
                         "canvas_size": 32},
        "batch_size": 8,
        "num_workers": 0,
    },
    "model": {
        "backbone": {"name": "vit", "size": "tiny", "patch_size": 4, "img_size": 16, "drop_path_rate": 0.0},
        "heads": {"dino": {"name": "dino", "out_dim": 64, "hidden_dim": 64, "bottleneck_dim": 32,
                           "freeze_last_layer_epochs": 0.0}},
    },
    "losses": {"dino": {"name": "dino", "weight": 1.0, "head": "dino", "teacher_temp": 0.04}},
    "optim": {"base_lr": 0.0005, "lr_scaling": "none", "warmup_epochs": 0.0},
    "teacher": {"momentum": 0.99},
    "train": {"max_steps": 3, "epoch_length": 10, "checkpoint_every": 3, "log_every": 1},
    "eval": {"at_end": False},
}


def tiny_recipe() -> dict[str, Any]:
    """A fresh copy of the tiny CPU recipe (see the module doc), as plain data."""
    return copy.deepcopy(_TINY_RECIPE)


def write_recipe(path: Path, data: Mapping[str, Any]) -> Path:
    """Write recipe ``data`` as YAML to ``path`` (parents created) and return ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(dict(data), sort_keys=False), encoding="utf-8")
    return path


def run_tiny_training(
    tmp_path: Path,
    losses: Mapping[str, Any] | None = None,
    overrides: Sequence[str] = (),
    steps: int = 3,
    *,
    recipe: Mapping[str, Any] | Path | str | None = None,
    changes: Mapping[str, Any] | None = None,
    output_dir: Path | None = None,
) -> TrainResult:
    """Train ``steps`` steps in this process and return the :class:`~sslkit.engine.trainer.TrainResult`.

    The recipe is ``recipe`` (a mapping or a YAML path; default :func:`tiny_recipe`) with a
    layer on top holding ``changes`` and ``losses`` (merged by the recipe rules: mappings key by
    key, ``null`` removes a loss or head, so ``losses={"mine": {"name": "my_loss"}}`` trains
    next to the DINO loss and ``losses={"dino": None, "mine": ...}`` replaces it), then
    ``train.max_steps=steps`` and the ``KEY=VALUE`` ``overrides``. Components must be
    registered: installed plugins are; others can be registered for the test with the
    ``sslkit_registry`` fixture or :func:`sslkit.testing.registered`.

    The run directory is ``output_dir`` (default ``tmp_path / "run"``): calling again resumes
    from its last checkpoint (the schedules span ``steps``, so continuing with a larger
    ``steps`` is not the same run as training straight to that length).
    """
    from sslkit.engine.trainer import Trainer
    from sslkit.recipe import load_recipe

    tmp_path.mkdir(parents=True, exist_ok=True)
    if recipe is None or isinstance(recipe, Mapping):
        base = write_recipe(tmp_path / "tiny_base.yaml", recipe if recipe is not None else tiny_recipe())
    else:
        base = Path(recipe).resolve()
    layer: dict[str, Any] = {"base": str(base), **copy.deepcopy(dict(changes or {}))}
    if losses is not None:
        layer["losses"] = {**layer.get("losses", {}), **copy.deepcopy(dict(losses))}
    top = write_recipe(tmp_path / "tiny_recipe.yaml", layer)
    resolved = load_recipe(top, [f"train.max_steps={steps}", f"train.checkpoint_every={steps}", *overrides])
    return Trainer(resolved, output_dir if output_dir is not None else tmp_path / "run").fit()


def assert_resumed(result: TrainResult, from_step: int, steps_run: int) -> None:
    """Fail unless the run of ``result`` loaded the checkpoint of step ``from_step`` and then ran
    ``steps_run`` steps (``TrainResult.resumed_from``, ``start_step`` and ``steps_run``)."""
    expected = f"step_{from_step:08d}.pt"
    loaded = Path(result.resumed_from).name if result.resumed_from is not None else None
    assert loaded == expected, f"the run should have resumed from {expected}, but it loaded {loaded or 'nothing'}"
    assert result.start_step == from_step, f"the run started at step {result.start_step}, not {from_step}"
    assert result.steps_run == steps_run, f"the run ran {result.steps_run} steps, not {steps_run}"
