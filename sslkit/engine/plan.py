"""The step plan: every loss's declared :class:`~sslkit.outputs.Output` requests, checked against the
models and merged into the fewest backbone passes (one per model, crop set and masking).

A step masks (draws crop selections and patch masks) when any request needs masks: a ``replace``
or ``drop`` masking, ``masked`` / ``visible`` positions, or the ``masks`` / ``masked_crops`` kinds.
``default`` masking then means ``replace`` for the student's global crops and ``none`` elsewhere.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass

from torch import nn

from sslkit.components import Backbone, Loss
from sslkit.errors import Problem, RecipeError, SSLKitError, suggest
from sslkit.outputs import CROP_SETS, MASKINGS, MODEL_SIDES, POSITIONS, Output
from sslkit.registry import Registry

#: kinds whose values are patch tokens
TOKEN_KINDS = ("patches", "blocks")
#: kinds that read no model
STEP_KINDS = ("images", "masks", "masked_crops")
#: the built-in kinds (plugins' kinds may use ``positions`` and ``blocks`` as their producers define)
BUILTIN_KINDS = ("cls", "patches", "registers", "blocks", "backbone", *STEP_KINDS)

PassKey = tuple[str, str, str]  # (model, "global" | "local", "none" | "replace" | "drop")


@dataclass(frozen=True)
class StepPlan:
    """What a step computes.

    ``inputs[loss][name]``: the resolved request behind each declared input; ``requests``: every
    distinct resolved request; ``blocks[pass]``: the block indices each backbone pass returns;
    ``masks``: whether the step masks; ``modules[model]``: the heads / student-only modules used.
    """

    inputs: dict[str, dict[str, Output]]
    requests: tuple[Output, ...]
    blocks: dict[PassKey, tuple[int, ...]]
    masks: bool
    modules: dict[str, tuple[str, ...]]

    def for_model(self, model: str) -> tuple[Output, ...]:
        """The requests computed in ``model``'s forward (model-free kinds run with the student)."""
        return tuple(r for r in self.requests if r.model == model)

    def uses(self, model: str) -> bool:
        return any(r.model == model for r in self.requests)

    @property
    def local_crops(self) -> bool:
        return any(key[1] == "local" for key in self.blocks)


def needs_masks(request: Output) -> bool:
    return (request.masking in ("replace", "drop") or request.positions != "all"
            or request.kind in ("masks", "masked_crops"))


def _resolve(request: Output, masks: bool, num_layers: int) -> Output:
    """``default`` masking made concrete; negative block indices counted from the end, sorted."""
    masking = request.masking
    if request.kind in STEP_KINDS or request.kind == "backbone":
        masking = "none"  # reads no backbone pass
    elif masking == "default":
        masking = "replace" if masks and request.model == "student" and request.crops != "local" else "none"
    blocks = tuple(sorted({b % num_layers if num_layers else b for b in request.blocks}))
    return dataclasses.replace(request, masking=masking, blocks=blocks)


class _Checker:
    """Collects the problems of every request of every loss, each under its recipe key."""

    def __init__(self, backbones: Mapping[str, Backbone], modules: Mapping[str, Mapping[str, nn.Module]],
                 registry: Registry, locations: Mapping[str, str]) -> None:
        self.backbones, self.modules, self.registry, self.locations = backbones, modules, registry, locations
        self.problems: list[Problem] = []

    def fail(self, loss: str, name: str, request: Output, message: str) -> None:
        key = f"losses.{loss}"
        self.problems.append(Problem(key, f"input {name!r} ({request.describe()}): {message}",
                                     self.locations.get(key)))

    def check(self, loss: str, name: str, r: Output) -> None:
        b = self.backbones.get(r.model, self.backbones["student"])
        kinds = self.registry.names("output")
        choices = {"model": (r.model, MODEL_SIDES), "crops": (r.crops, CROP_SETS), "masking": (r.masking, MASKINGS),
                   "positions": (r.positions, POSITIONS)}
        for field_name, (value, allowed) in choices.items():
            if value not in allowed:
                self.fail(loss, name, r, f"{field_name} {value!r} is not one of {', '.join(allowed)}")
        if r.kind not in kinds:
            self.fail(loss, name, r, f"unknown output kind {r.kind!r}{suggest(r.kind, kinds)}; registered: "
                      f"{', '.join(kinds)}")
        else:
            self._check_options(loss, name, r)
        if r.masking in ("replace", "drop") and r.crops != "global":
            self.fail(loss, name, r, "only global crops are masked: use crops='global'")
        if r.masking == "replace" and not b.supports_masking:
            self.fail(loss, name, r, f"backbone {type(b).__name__} cannot take masks; use a ViT backbone")
        if r.masking == "drop" and not b.supports_token_dropping:
            self.fail(loss, name, r, f"backbone {type(b).__name__} cannot drop masked tokens")
        builtin = r.kind in BUILTIN_KINDS
        if r.positions != "all" and (r.crops != "global" or (builtin and r.kind not in TOKEN_KINDS)):
            self.fail(loss, name, r, "masked / visible positions exist for patch tokens of global crops only")
        student = self.backbones["student"]
        if (r.model != "student" and (r.positions != "all" or r.masking in ("replace", "drop"))
                and b.patch_size != student.patch_size):
            self.fail(loss, name, r, f"the masks are drawn on the student's patch grid (patch {student.patch_size}); "
                      f"the {r.model}'s backbone has patch {b.patch_size}: masked positions do not correspond")
        if r.kind in TOKEN_KINDS and not b.supports_patch_tokens:
            self.fail(loss, name, r, f"backbone {type(b).__name__} has no patch tokens (CLS-only model)")
        if r.kind == "blocks" and not r.blocks:
            self.fail(loss, name, r, "kind 'blocks' needs block indices, e.g. blocks=(-4, -3, -2, -1)")
        elif r.blocks and builtin and r.kind != "blocks":
            self.fail(loss, name, r, "blocks=... applies to kind 'blocks' and to plugins' kinds only")
        elif r.blocks and not b.supports_block_outputs:
            self.fail(loss, name, r, f"backbone {type(b).__name__} cannot return intermediate blocks")
        elif any(not -b.num_layers <= i < b.num_layers for i in r.blocks):
            self.fail(loss, name, r, f"block indices {list(r.blocks)} outside the backbone's {b.num_layers} blocks")
        if r.kind == "images" and r.crops == "all":
            self.fail(loss, name, r, "global and local crops differ in size: request them separately")
        for head in (*r.heads, *r.modules):
            available = self.modules[r.model]
            if head not in available:
                only_student = r.model == "teacher" and head in self.modules["student"]
                why = " (a student-only module)" if only_student else ""
                self.fail(loss, name, r, f"no head {head!r} on the {r.model}{why}; defined: "
                          f"{', '.join(available) or 'none'}")

    def _check_options(self, loss: str, name: str, r: Output) -> None:
        schema = self.registry.get("output", r.kind).params
        allowed = {f.name for f in dataclasses.fields(schema)}
        for key, _ in r.options:
            if key not in allowed:
                self.fail(loss, name, r, f"unknown option {key!r} of output kind {r.kind!r}; allowed: "
                          f"{', '.join(sorted(allowed)) or 'none'}")


def build_plan(losses: Mapping[str, Loss], backbones: Mapping[str, Backbone], heads: Mapping[str, nn.Module],
               student_modules: Mapping[str, nn.Module], registry: Registry, source: str = "recipe",
               locations: Mapping[str, str] | None = None, teacher_heads: Mapping[str, nn.Module] | None = None,
               ) -> StepPlan:
    """Check every declared request (a :class:`RecipeError` lists them all) and merge them.

    ``backbones``: ``student`` and ``teacher`` (the teacher's defaults to the student's, as the EMA
    teacher is its copy); ``teacher_heads``: a frozen teacher's own heads (default: copies of ``heads``)."""
    backbones = {"teacher": backbones["student"], **backbones}
    modules = {"student": {**heads, **student_modules}, "teacher": dict(teacher_heads if teacher_heads is not None
                                                                           else heads)}
    checker = _Checker(backbones, modules, registry, locations or {})
    for loss_name, loss in losses.items():
        for name, request in loss.inputs.items():
            checker.check(loss_name, name, request)
    if checker.problems:
        raise RecipeError(checker.problems, header=f"recipe {source}: the losses ask for outputs these models "
                          "cannot produce")
    masks = any(needs_masks(r) for loss in losses.values() for r in loss.inputs.values())
    inputs = {loss_name: {name: _resolve(r, masks, backbones[r.model].num_layers) for name, r in loss.inputs.items()}
              for loss_name, loss in losses.items()}
    requests = tuple(dict.fromkeys(r for per_loss in inputs.values() for r in per_loss.values()))
    blocks: dict[PassKey, set[int]] = {}
    for r in requests:  # token kinds and plugins' producers read the passes of their model, crops, masking
        if r.kind in STEP_KINDS or r.kind == "backbone":
            continue
        if r.crops in ("global", "all"):
            blocks.setdefault((r.model, "global", r.masking), set()).update(r.blocks)
        if r.crops in ("local", "all"):
            blocks.setdefault((r.model, "local", "none"), set()).update(r.blocks)
    used: dict[str, tuple[str, ...]] = {
        side: tuple(dict.fromkeys(h for r in requests if r.model == side for h in (*r.heads, *r.modules)))
        for side in MODEL_SIDES}
    return StepPlan(inputs=inputs, requests=requests, blocks={k: tuple(sorted(v)) for k, v in blocks.items()},
                    masks=masks, modules=used)


def unplanned_parameters(plan: StepPlan, backbone: Backbone, heads: nn.ModuleDict,
                         student_modules: nn.ModuleDict) -> list[str]:
    """Names (``backbone.*``, ``heads.<name>.*``, ``student_modules.<name>.*``, as in the student) of the
    parameters that no step of ``plan`` can give a gradient: the backbone's mask-only parameters when
    no student pass replaces masked patches, and every parameter of a head or module the student never applies.

    They must not be trainable: DDP waits for a gradient of every trainable parameter in each
    step (and fails on the next one when one never comes), and the optimizer would decay them.
    """
    names: list[str] = []
    if not any(r.model == "student" and r.masking == "replace" for r in plan.requests):
        own = dict(backbone.named_parameters())
        for name in backbone.mask_only_parameters():
            if name not in own:
                raise SSLKitError(f"backbone {type(backbone).__name__}: mask_only_parameters() names {name!r}, "
                                  f"which is not one of its parameters")
            names.append(f"backbone.{name}")
    used = plan.modules["student"]
    for prefix, group in (("heads", heads), ("student_modules", student_modules)):
        for module_name, module in group.items():
            if module_name not in used:
                names.extend(f"{prefix}.{module_name}.{name}" for name, _ in module.named_parameters())
    return names
