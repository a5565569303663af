"""Assembling a run's components from a validated recipe, with cross-component checks.

Build order: dataset, augmentation, backbone, heads (input width from the backbone), student-only
modules (the heads' output widths known), losses, then the step plan from the losses' declared
outputs (:mod:`sslkit.engine.plan`), and the crop policy and masker when the plan masks.
Mismatches between components (a loss asking for a head that does not exist, a backbone that
cannot mask) are reported with the recipe key that caused them. Parameters that the plan cannot
train (the mask token without a masking request, heads that no request applies) are frozen here,
before any strategy wraps the model or any optimizer sees it.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field, replace
from typing import Any

from torch import nn

from sslkit.components import (
    Augmentation,
    Backbone,
    BuildContext,
    CropPolicy,
    Head,
    ImageDataset,
    Loss,
    Masker,
    ParamGroupPolicy,
)
from sslkit.engine.frozen_teacher import load_frozen_teacher
from sslkit.engine.param_schedules import Binding, ParamSchedules
from sslkit.engine.plan import StepPlan, build_plan, unplanned_parameters
from sslkit.errors import Problem, RecipeError, SSLKitError
from sslkit.outputs import Producer
from sslkit.recipe import ResolvedRecipe
from sslkit.registry import Registry, get_registry
from sslkit.weights import InitReport, initialise

log = logging.getLogger("sslkit")


@dataclass
class Components:
    """Everything a training run is made of, built and checked."""

    dataset: ImageDataset
    augmentation: Augmentation
    backbone: Backbone
    heads: nn.ModuleDict
    student_modules: nn.ModuleDict
    losses: nn.ModuleDict
    weights: dict[str, float]
    plan: StepPlan
    producers: dict[str, Producer]
    crop_policy: CropPolicy | None
    masker: Masker | None
    param_groups: ParamGroupPolicy
    schedules: ParamSchedules
    context: BuildContext
    frozen: list[str]  # student parameters that the plan cannot train
    teacher_backbone: Backbone | None = None  # teacher.mode frozen: the teacher's own network
    teacher_heads: nn.ModuleDict | None = None
    init_reports: dict[str, InitReport] = field(default_factory=dict)  # "backbone" / "teacher": what was loaded

    def loss_modules(self) -> dict[str, Loss]:
        """The losses by name, typed (``losses`` is the ModuleDict the student holds)."""
        found: dict[str, Loss] = {}
        for name, loss in self.losses.items():
            assert isinstance(loss, Loss)
            found[name] = loss
        return found


def _build(resolved: ResolvedRecipe, key: str, ctx: BuildContext) -> Any:
    """Build one component; a plugin's refusal (ValueError, SSLKitError) is reported with its recipe key."""
    spec = resolved.spec(key)
    try:
        return spec.component.factory(spec.params, ctx)
    except (ValueError, SSLKitError) as exc:
        if isinstance(exc, RecipeError):
            raise
        where = resolved.locations.get(key)
        message = f"{spec.component.kind} {spec.component.name!r} cannot be built: {exc}"
        raise RecipeError([Problem(key, message, where)], header=f"recipe {resolved.source} does not fit together") \
            from None


def _freeze_unplanned(plan: StepPlan, backbone: Backbone, heads: nn.ModuleDict,
                      student_modules: nn.ModuleDict) -> list[str]:
    """Set ``requires_grad=False`` on the parameters no step of ``plan`` can train; their names.

    They stay in the model (checkpoints, the EMA teacher and exports keep their values), but the
    optimizer, DDP and FSDP2 never treat them as trainable.
    """
    names = unplanned_parameters(plan, backbone, heads, student_modules)
    params = {f"backbone.{n}": p for n, p in backbone.named_parameters()}
    params.update({f"heads.{n}": p for n, p in heads.named_parameters()})
    params.update({f"student_modules.{n}": p for n, p in student_modules.named_parameters()})
    for name in names:
        params[name].requires_grad_(False)
    return names


def _schedule_bindings(resolved: ResolvedRecipe, weights: dict[str, float]) -> list[Binding]:
    bindings = []
    for key, spec in resolved.components.items():
        for name, schedule in spec.schedules.items():
            if name == "weight":
                bindings.append(Binding(f"{key}.weight", schedule, weights, key.split(".", 1)[1]))
            else:
                bindings.append(Binding(f"{key}.{name}", schedule, spec.params, name))
    return bindings


def new_backbone(resolved: ResolvedRecipe, ctx: BuildContext) -> Backbone:
    """A freshly built (randomly initialised, never loaded) instance of the recipe's ``model.backbone``,
    e.g. to hold a full copy of a sharded backbone's weights."""
    backbone: Backbone = _build(resolved, "model.backbone", ctx)
    return backbone


def build_components(resolved: ResolvedRecipe, registry: Registry | None = None, *, resuming: bool = False,
                     announce: bool = True) -> Components:
    """Build every component of ``resolved`` (models on the CPU; the trainer moves them).

    ``resuming``: the run continues from its own checkpoint, so ``model.backbone.init_from`` is not read
    (the checkpoint's weights replace it anyway); ``announce``: log the load reports (the main process)."""
    registry = registry or get_registry()
    recipe = resolved.recipe
    ctx = BuildContext(seed=recipe.run.seed, heads=(*recipe.model.heads, *recipe.model.student_modules),
                       epoch_length=recipe.train.epoch_length, max_steps=recipe.train.max_steps)
    dataset = _build(resolved, "data.dataset", ctx)
    augmentation = _build(resolved, "data.augmentation", ctx)
    ctx = replace(ctx, global_crop_size=augmentation.global_crop_size, local_crop_size=augmentation.local_crop_size,
                  n_global_crops=augmentation.n_global, n_local_crops=augmentation.n_local)
    backbone = _build(resolved, "model.backbone", ctx)
    reports: dict[str, InitReport] = {}
    spec = resolved.spec("model.backbone")
    if spec.init_from is not None and not resuming:  # before the EMA teacher copies it: both start from these
        reports["backbone"] = initialise(backbone, spec.init_from, spec.init_min_fraction, spec.init_format,
                                         log=log.info if announce else None)
    teacher_ctx = ctx
    ctx = replace(ctx, embed_dim=backbone.embed_dim, patch_size=backbone.patch_size)
    head_list: dict[str, Head] = {name: _build(resolved, f"model.heads.{name}", ctx) for name in recipe.model.heads}
    ctx = replace(ctx, head_dims={name: head.out_dim for name, head in head_list.items()})
    module_list: dict[str, Head] = {}
    for name in recipe.model.student_modules:  # each sees the widths of the heads and of the modules before it
        module_list[name] = _build(resolved, f"model.student_modules.{name}", ctx)
        ctx = replace(ctx, head_dims={**ctx.head_dims, name: module_list[name].out_dim})
    loss_list: dict[str, Loss] = {name: _build(resolved, f"losses.{name}", ctx) for name in recipe.losses}
    heads, student_modules, losses = nn.ModuleDict(head_list), nn.ModuleDict(module_list), nn.ModuleDict(loss_list)
    teacher_backbone, teacher_heads = _frozen_teacher(resolved, teacher_ctx)
    backbones = {"student": backbone, "teacher": teacher_backbone or backbone}
    plan = build_plan(loss_list, backbones, head_list, module_list, registry, resolved.source, resolved.locations,
                      teacher_heads=dict(teacher_heads.items()) if teacher_heads is not None else None)
    if teacher_backbone is not None and teacher_heads is not None and not resuming:  # else: the checkpoint's
        t = recipe.teacher
        assert t.init_from is not None  # validated: a frozen teacher needs weights
        reports["teacher"] = load_frozen_teacher(teacher_backbone, teacher_heads, t.init_from, t.init_min_fraction,
                                                 plan.modules["teacher"])
    frozen = _freeze_unplanned(plan, backbone, heads, student_modules)
    crop_policy = _build(resolved, "masking.crop_policy", ctx) if plan.masks else None
    masker = _build(resolved, "masking.masker", ctx) if plan.masks else None
    weights = {name: resolved.spec(f"losses.{name}").weight for name in recipe.losses}
    producers = {r.kind: registry.get("output", r.kind).factory for r in plan.requests}
    return Components(
        dataset=dataset,
        augmentation=augmentation,
        backbone=backbone,
        heads=heads,
        student_modules=student_modules,
        losses=losses,
        weights=weights,
        plan=plan,
        producers=producers,
        crop_policy=crop_policy,
        masker=masker,
        param_groups=_build(resolved, "optim.param_groups", ctx),
        schedules=ParamSchedules(_schedule_bindings(resolved, weights), recipe.train.epoch_length,
                                 recipe.train.max_steps),
        context=ctx,
        frozen=frozen,
        teacher_backbone=teacher_backbone,
        teacher_heads=teacher_heads,
        init_reports=reports,
    )


def _frozen_teacher(resolved: ResolvedRecipe, ctx: BuildContext) -> tuple[Backbone | None, nn.ModuleDict | None]:
    """``teacher.mode: frozen``: the teacher's backbone (``teacher.backbone``, else the student's
    definition) and one head per student head (``teacher.heads.<name>``, else the student's definition),
    built at the teacher's width; ``(None, None)`` for the EMA teacher."""
    recipe = resolved.recipe
    if recipe.teacher.mode != "frozen":
        return None, None
    backbone = _build(resolved, "teacher.backbone" if recipe.teacher.backbone is not None else "model.backbone", ctx)
    ctx = replace(ctx, embed_dim=backbone.embed_dim, patch_size=backbone.patch_size)
    heads = nn.ModuleDict({
        name: _build(resolved, f"teacher.heads.{name}" if name in recipe.teacher.heads else f"model.heads.{name}", ctx)
        for name in recipe.model.heads})
    return backbone, heads
