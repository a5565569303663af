"""Every shipped recipe trains with one process, and with two gloo processes under DDP and FSDP2,
to the same weights.

Each recipe under ``recipes/`` (found by globbing, so a new recipe is covered without editing
this test; ``recipes/ablations/`` holds ablation specs, checked to be such) is shrunk through
overrides derived from what it contains: the embedded synthetic dataset, 16/8 px crops, a
16-wide 2-block ViT with 4 px patches, every head and every prototype count small, 2 steps of
4 images per process, no evaluation. Everything else (losses, masking, parameter groups,
strategies) stays the recipe's own, except what is not world-size invariant by design
(drop-path draws per process, per-process KoLeo) or ill-conditioned at a tiny initialisation
(LayerScale 1e-5: see :func:`shrink_overrides`). A distillation recipe (``teacher.mode: frozen``)
keeps its frozen teacher, shrunk the same way but wider than the student (so its heads map another
width), loaded from a tiny EMA run of that teacher trained first (:func:`train_frozen_teacher`).
Two processes with 4 images each must then agree
with one process with 8 within 1e-4, the tolerance of float32 reductions split across processes
(they agree to about 1e-7). The lr and teacher momentum are raised so that two steps move the
weights well beyond it (checked), and AdamW's eps is 1: Adam's first steps are sign steps, which
would turn the rounding of a near-zero gradient into a full +-lr difference.
"""

from __future__ import annotations

import os
import socket
import typing
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import yaml

from sslkit.ablation.spec import load_ablation
from sslkit.engine.checkpoint import load_checkpoint
from sslkit.engine.trainer import Trainer
from sslkit.recipe import ResolvedRecipe, load_recipe

pytestmark = pytest.mark.slow

RECIPES = Path(__file__).resolve().parents[2] / "recipes"
ABLATIONS = RECIPES / "ablations"
BATCH_PER_PROCESS = 4
STEPS = 2
#: Backbone parameters the shrinking sets; a backbone without them cannot be shrunk generically.
BACKBONE_SIZE = {"embed_dim": 16, "depth": 2, "num_heads": 2, "patch_size": 4, "img_size": 16}
#: The frozen teacher of a distillation recipe: as the student, wider.
TEACHER_SIZE = {**BACKBONE_SIZE, "embed_dim": 24}
#: Width parameters of heads and losses, set wherever a component has them (and no frozen first steps:
#: with 2 steps a frozen last layer would leave the heads untested).
WIDTHS = {"out_dim": 32, "hidden_dim": 32, "bottleneck_dim": 16, "num_prototypes": 16, "freeze_last_layer_epochs": 0}
#: Schedules that make 2 steps move student and teacher far beyond the comparison's tolerance.
COMMON = ["run.device=cpu", "run.precision=fp32", "run.num_threads=1", "data.num_workers=0",
          "data.dataset={name: synthetic, size: 32, image_size: 32}", "eval.at_start=false", "eval.at_end=false",
          "eval.every=0", "eval.train_data=null", "eval.test_data=null", f"train.max_steps={STEPS}",
          f"train.checkpoint_every={STEPS}", "train.log_every=1", "optim.base_lr=0.1", "optim.eps=1.0",
          "optim.lr_scaling=none", "optim.warmup_epochs=0",
          "teacher.momentum=0.5", "teacher.momentum_end=0.5"]


def shipped_recipes() -> list[Path]:
    """Every recipe file under ``recipes/`` except the ablation specs."""
    return sorted(p for p in RECIPES.rglob("*.yaml") if ABLATIONS not in p.parents)


def _fields(resolved: ResolvedRecipe, key: str) -> set[str]:
    return set(vars(resolved.spec(key).params))


def _set(key: str, value: Any) -> str:
    return f"{key}={yaml.safe_dump(value, default_flow_style=True).strip().removesuffix('...').strip()}"


def _shrink_backbone(resolved: ResolvedRecipe, key: str, size: dict[str, int]) -> list[str]:
    """Overrides that make the backbone at ``key`` tiny (``size``), without drop-path or pretrained weights."""
    fields = _fields(resolved, key)
    missing = set(size) - fields
    assert not missing, (f"{resolved.source}: {key} {resolved.spec(key).component.name!r} has no "
                         f"{sorted(missing)} parameters, so this test cannot shrink it; teach shrink_overrides "
                         "how to make it tiny")
    overrides = [_set(f"{key}.{k}", v) for k, v in size.items()]
    # drop-path draws its per-sample decisions from each process's own generator: not world-size invariant
    overrides += [_set(f"{key}.{k}", v) for k, v in (("drop_path_rate", 0.0), ("init_from", None),
                                                     ("pretrained", False)) if k in fields]
    if getattr(resolved.spec(key).params, "layerscale_init", None) is not None:
        # LayerScale at 1e-5 makes every image's CLS token nearly the same at initialisation; KoLeo's
        # log nearest-neighbour distance then turns float rounding into 1e-4 differences. 0.1 keeps the
        # LayerScale parameters and separates the features.
        overrides.append(f"{key}.layerscale_init=0.1")
    return overrides


def shrink_overrides(path: Path) -> list[str]:
    """Overrides that turn the recipe at ``path`` into a tiny CPU run (raises ``AssertionError``
    naming what it cannot shrink)."""
    overrides = list(COMMON)
    resolved = load_recipe(path, overrides)  # the dataset replaced: recipes for ImageNet name no folder
    overrides += _shrink_backbone(resolved, "model.backbone", BACKBONE_SIZE)
    teacher = resolved.recipe.teacher
    if teacher.mode == "frozen":
        assert not teacher.heads, (f"{path}: teacher.heads is set; train_frozen_teacher cannot build a teacher run "
                                   "with heads other than the student's definitions yet")
        if teacher.backbone is not None:
            overrides += _shrink_backbone(resolved, "teacher.backbone", TEACHER_SIZE)
    augmentation = _fields(resolved, "data.augmentation")
    sizes = {"global_crop_size": 16, "local_crop_size": 8}
    assert set(sizes) <= augmentation, f"{path}: augmentation has no global/local crop sizes to shrink"
    overrides += [_set(f"data.augmentation.{k}", v) for k, v in sizes.items()]
    if "canvas_size" in augmentation:
        overrides.append("data.augmentation.canvas_size=null")
    if "n_local" in augmentation:
        overrides.append(_set("data.augmentation.n_local", min(2, resolved.spec("data.augmentation").params.n_local)))
    model = resolved.recipe.model
    for key in ([f"model.heads.{h}" for h in model.heads] + [f"model.student_modules.{m}" for m in
                model.student_modules] + [f"losses.{n}" for n in resolved.recipe.losses]):
        overrides += [_set(f"{key}.{k}", v) for k, v in WIDTHS.items() if k in _fields(resolved, key)]
        # a per-process statistic (DINOv2's KoLeo over each GPU's own samples) differs with the number of
        # processes by design; its global-batch mode is what can be compared across strategies
        mode = typing.get_type_hints(type(resolved.spec(key).params)).get("mode")
        if "distributed" in typing.get_args(mode):
            overrides.append(f"{key}.mode=distributed")
    return overrides


def train_frozen_teacher(recipe: Path, overrides: list[str], out: Path) -> list[str]:
    """``overrides`` of a distillation recipe (``teacher.mode: frozen``) completed with the teacher's weights:
    the shrunk recipe with its teacher's backbone as the model, trained for one step as an EMA run into
    ``out`` (its heads are the student's definitions at the teacher's width, as the frozen teacher builds
    them), then named by ``teacher.init_from``. Other recipes' overrides are returned unchanged."""
    resolved = load_recipe(recipe, overrides)
    if resolved.recipe.teacher.mode != "frozen":
        return overrides
    teacher_run = [*overrides, "teacher.mode=ema", "teacher.backbone=null", "teacher.init_from=null",
                   "train.max_steps=1", "train.checkpoint_every=1"]
    if resolved.recipe.teacher.backbone is not None:
        spec = resolved.spec("teacher.backbone")
        teacher_run.append(_set("model.backbone", {"name": spec.component.name, **vars(spec.params)}))
    Trainer(load_recipe(recipe, [*teacher_run, f"data.batch_size={2 * BATCH_PER_PROCESS}"]), out).fit()
    return [*overrides, f"teacher.init_from={out}"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _worker(rank: int, world: int, port: int, runs: list[tuple[str, list[str], str]]) -> None:
    """Train every recipe of ``runs`` in turn in one process group (one start-up for all recipes)."""
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), WORLD_SIZE=str(world), RANK=str(rank),
                      LOCAL_RANK=str(rank))
    torch.set_num_threads(1)
    try:
        for recipe, overrides, out in runs:
            try:
                Trainer(load_recipe(recipe, overrides), Path(out)).fit()
            except Exception as exc:
                raise RuntimeError(f"{recipe} ({overrides[-1]}, {world} processes): {exc}") from exc
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()


def _train_single(recipe: Path, overrides: list[str], out: Path) -> tuple[str, dict[str, torch.Tensor]]:
    """Train the shrunk recipe in this process; return which model training should move (the EMA
    teacher, or the student of a distillation run, whose teacher is frozen) and its initial weights."""
    trainer = Trainer(load_recipe(recipe, [*overrides, f"data.batch_size={2 * BATCH_PER_PROCESS}"]), out)
    part = "student" if trainer.teacher.frozen else "teacher"
    model = trainer.student if trainer.teacher.frozen else trainer.teacher
    initial = {k: v.detach().clone() for k, v in model.state_dict().items()}
    trainer.fit()
    return part, initial


def _differences(one: dict[str, Any], two: dict[str, Any], label: str) -> list[str]:
    """The student and teacher tensors of two checkpoints that differ by more than 1e-4."""
    found = []
    for part in ("student", "teacher"):
        for key, value in one[part].items():
            try:
                torch.testing.assert_close(two[part][key], value, atol=1e-4, rtol=1e-4)
            except AssertionError as exc:
                found.append(f"{label} {part} {key}: {str(exc).splitlines()[-2].strip()}")
    return found


def test_recipes_are_found_and_ablation_files_are_ablation_specs() -> None:
    recipes = shipped_recipes()
    assert RECIPES / "quickstart.yaml" in recipes and len(recipes) >= 5
    for spec in ABLATIONS.glob("*.yaml"):
        load_ablation(spec)  # an ablation spec, not a recipe this test would have to run


def test_every_recipe_on_two_processes_equals_one_process(tmp_path: Path) -> None:
    """One process (the reference, in this process), then DDP and FSDP2 on two processes (one process group
    for every recipe and both strategies, so the processes start once)."""
    shrunk, problems = {}, []
    for recipe in shipped_recipes():
        try:
            shrunk[recipe] = shrink_overrides(recipe)
        except AssertionError as exc:
            problems.append(str(exc))
    assert not problems, "recipes that cannot be shrunk generically:\n" + "\n".join(problems)
    shrunk = {recipe: train_frozen_teacher(recipe, overrides, tmp_path / "teachers" / recipe.stem)
              for recipe, overrides in shrunk.items()}
    initial = {recipe: _train_single(recipe, overrides, tmp_path / "single" / recipe.stem)
               for recipe, overrides in shrunk.items()}
    strategies = ("ddp", "fsdp2")
    runs = [(str(recipe), [*overrides, f"data.batch_size={BATCH_PER_PROCESS}", f"train.strategy={strategy}"],
             str(tmp_path / strategy / recipe.stem)) for strategy in strategies for recipe, overrides in shrunk.items()]
    mp.spawn(_worker, args=(2, _free_port(), runs), nprocs=2)
    differences = []
    for recipe in shrunk:
        one = load_checkpoint(tmp_path / "single" / recipe.stem)
        part, weights = initial[recipe]
        moved = max(float((one[part][k] - v).abs().max()) for k, v in weights.items() if v.is_floating_point())
        assert moved > 1e-3, f"{recipe.name}: training did not move the {part}; the comparison would be vacuous"
        for strategy in strategies:
            two = load_checkpoint(tmp_path / strategy / recipe.stem)
            assert one["step"] == two["step"] == STEPS
            differences += _differences(one, two, f"{recipe.relative_to(RECIPES)} {strategy}")
    assert not differences, "two processes differ from one process:\n" + "\n".join(differences)
