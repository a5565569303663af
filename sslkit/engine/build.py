"""Assembling a run's components from a validated recipe, with cross-component checks.

Build order: dataset, augmentation, backbone, heads (input width from the backbone), losses
(head sizes known), then crop policy and masker when a loss needs masks. Mismatches between
components (a loss naming a missing head, a backbone that cannot mask) are reported with the
recipe key that caused them. Parameters that the step plan cannot train (the mask token
without a masking loss, heads that no loss uses) are frozen here, before any strategy wraps the
model or any optimizer sees it.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from torch import nn

from sslkit.components import Augmentation, Backbone, BuildContext, CropPolicy, ImageDataset, Masker
from sslkit.engine.plan import StepPlan, unplanned_parameters
from sslkit.errors import Problem, RecipeError, SSLKitError
from sslkit.recipe import ResolvedRecipe


@dataclass
class Components:
    """Everything a training run is made of, built and checked."""

    dataset: ImageDataset
    augmentation: Augmentation
    backbone: Backbone
    heads: nn.ModuleDict
    losses: nn.ModuleDict
    weights: dict[str, float]
    plan: StepPlan
    crop_policy: CropPolicy | None
    masker: Masker | None
    param_groups: Any
    context: BuildContext
    frozen: list[str]  # student parameters (``backbone.*``, ``heads.*``) that the plan cannot train


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


def _check_plan(resolved: ResolvedRecipe, losses: nn.ModuleDict, heads: nn.ModuleDict, backbone: Backbone) -> None:
    problems: list[Problem] = []
    for name, loss in losses.items():
        key = f"losses.{name}"
        where = resolved.locations.get(key)
        needs = loss.needs
        for head in (needs.cls_head, needs.masked_patch_head):
            if head is not None and head not in heads:
                problems.append(Problem(key, f"uses head {head!r}, which model.heads does not define "
                                        f"(defined: {', '.join(heads) or 'none'})", where))
        if (needs.masks or needs.masked_patch_head) and not backbone.supports_masking:
            problems.append(Problem(key, f"needs masked patch tokens, but backbone {type(backbone).__name__} "
                                    "cannot take masks; use a ViT backbone or drop this loss", where))
        if needs.patch_tokens and not backbone.supports_patch_tokens:
            problems.append(Problem(key, f"needs patch tokens, but backbone {type(backbone).__name__} "
                                    "has none (CLS-only model)", where))
    if problems:
        raise RecipeError(problems, header=f"recipe {resolved.source} does not fit together")


def _freeze_unplanned(plan: StepPlan, backbone: Backbone, heads: nn.ModuleDict) -> list[str]:
    """Set ``requires_grad=False`` on the parameters no step of ``plan`` can train; their names.

    They stay in the model (checkpoints, the EMA teacher and exports keep their values), but the
    optimizer, DDP and FSDP2 never treat them as trainable.
    """
    names = unplanned_parameters(plan, backbone, heads)
    params = {f"backbone.{n}": p for n, p in backbone.named_parameters()}
    params.update({f"heads.{n}": p for n, p in heads.named_parameters()})
    for name in names:
        params[name].requires_grad_(False)
    return names


def build_components(resolved: ResolvedRecipe) -> Components:
    """Build every component of ``resolved`` (models on the CPU; the trainer moves them)."""
    recipe = resolved.recipe
    ctx = BuildContext(seed=recipe.run.seed, heads=tuple(recipe.model.heads))
    dataset = _build(resolved, "data.dataset", ctx)
    augmentation = _build(resolved, "data.augmentation", ctx)
    ctx = replace(ctx, global_crop_size=augmentation.global_crop_size, local_crop_size=augmentation.local_crop_size,
                  n_global_crops=augmentation.n_global, n_local_crops=augmentation.n_local)
    backbone = _build(resolved, "model.backbone", ctx)
    ctx = replace(ctx, embed_dim=backbone.embed_dim, patch_size=backbone.patch_size)
    heads = nn.ModuleDict({name: _build(resolved, f"model.heads.{name}", ctx) for name in recipe.model.heads})
    ctx = replace(ctx, head_dims={name: head.out_dim for name, head in heads.items()})
    losses = nn.ModuleDict({name: _build(resolved, f"losses.{name}", ctx) for name in recipe.losses})
    _check_plan(resolved, losses, heads, backbone)
    plan = StepPlan.from_needs(loss.needs for loss in losses.values())
    frozen = _freeze_unplanned(plan, backbone, heads)
    crop_policy = _build(resolved, "masking.crop_policy", ctx) if plan.masks else None
    masker = _build(resolved, "masking.masker", ctx) if plan.masks else None
    return Components(
        dataset=dataset,
        augmentation=augmentation,
        backbone=backbone,
        heads=heads,
        losses=losses,
        weights={name: resolved.spec(f"losses.{name}").weight for name in recipe.losses},
        plan=plan,
        crop_policy=crop_policy,
        masker=masker,
        param_groups=_build(resolved, "optim.param_groups", ctx),
        context=ctx,
        frozen=frozen,
    )
