"""Validating a composed recipe completely before anything is built.

Core keys are checked against :mod:`sslkit.recipe.schema`; every component entry is checked
against its plugin's parameter schema. All problems are collected and reported together, each
with its file and line (or the command-line override), dotted key, expectation and a close
match.
"""

from __future__ import annotations

import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sslkit.errors import Problem, RecipeError
from sslkit.params import to_dict, validate
from sslkit.recipe.compose import apply_overrides, load_layers
from sslkit.recipe.migration import moved_keys
from sslkit.recipe.param_schedule import ParamSchedule, is_schedule, parse_schedule
from sslkit.recipe.schema import Recipe
from sslkit.recipe.source import Locations
from sslkit.registry import Component, Registry, get_registry

#: Keys that belong to the engine inside a component entry, per kind (not plugin parameters).
RESERVED_KEYS = {"loss": ("name", "weight"), "backbone": ("name", "init_from", "init_format", "init_min_fraction")}
#: The backbone's ``init_from`` keys and their defaults (see sslkit.weights.initialise).
INIT_DEFAULTS: dict[str, Any] = {"init_from": None, "init_format": "auto", "init_min_fraction": 0.9}


@dataclass
class ComponentSpec:
    """A validated component entry: which plugin, its parameters, (for losses) the weight and (for
    backbones) the weights to start from: ``init_from`` (a path or None), the layout ``init_format``
    and ``init_min_fraction``, the least fraction of the backbone that must load."""

    key: str  # dotted key in the recipe, e.g. "losses.dino"
    component: Component
    params: Any
    weight: float = 1.0
    init_from: str | None = None
    init_format: str = "auto"
    init_min_fraction: float = 0.9
    schedules: dict[str, ParamSchedule] = field(default_factory=dict)  # parameter (or "weight") -> schedule


@dataclass
class ResolvedRecipe:
    """A fully validated recipe: the typed core, the validated components and plain data."""

    recipe: Recipe
    components: dict[str, ComponentSpec]
    data: dict[str, Any]
    source: str
    locations: Locations = field(default_factory=dict)

    def spec(self, key: str) -> ComponentSpec:
        return self.components[key]


def _component_entries(recipe: Recipe) -> list[tuple[str, str, dict[str, Any]]]:
    entries = [("dataset", "data.dataset", recipe.data.dataset),
               ("augmentation", "data.augmentation", recipe.data.augmentation),
               ("backbone", "model.backbone", recipe.model.backbone),
               ("crop_policy", "masking.crop_policy", recipe.masking.crop_policy),
               ("masker", "masking.masker", recipe.masking.masker),
               ("param_groups", "optim.param_groups", recipe.optim.param_groups)]
    entries += [("head", f"model.heads.{n}", spec) for n, spec in recipe.model.heads.items()]
    entries += [("head", f"model.student_modules.{n}", spec) for n, spec in recipe.model.student_modules.items()]
    entries += [("loss", f"losses.{n}", spec) for n, spec in recipe.losses.items()]
    if recipe.teacher.backbone is not None:
        entries.append(("backbone", "teacher.backbone", recipe.teacher.backbone))
    entries += [("head", f"teacher.heads.{n}", spec) for n, spec in recipe.teacher.heads.items()]
    for which in ("train_data", "test_data"):
        spec = getattr(recipe.eval, which)
        if spec is not None:
            entries.append(("dataset", f"eval.{which}", spec))
    return entries


def _check_component(kind: str, key: str, spec: dict[str, Any], registry: Registry, locations: Locations,
                     problems: list[Problem]) -> ComponentSpec | None:
    locate = locations.get
    name = spec.get("name")
    if not isinstance(name, str):
        problems.append(Problem(f"{key}.name", f"required: the name of a registered {kind} plugin; available: "
                                f"{', '.join(registry.names(kind))}", locate(key)))
        return None
    try:
        component = registry.get(kind, name)
    except Exception as exc:  # PluginError: unknown or conflicting name, with suggestions
        problems.append(Problem(f"{key}.name", str(exc), locate(f"{key}.name") or locate(key)))
        return None
    reserved = RESERVED_KEYS.get(kind, ("name",))
    schedules, values = _schedules(key, kind, component, spec, locations, problems)
    weight = values.get("weight", 1.0)
    if kind == "loss" and (isinstance(weight, bool) or not isinstance(weight, int | float) or weight < 0):
        problems.append(Problem(f"{key}.weight", f"expected a number >= 0, got {weight!r}", locate(f"{key}.weight")))
    values = {k: v for k, v in values.items() if k not in reserved}
    params = validate(component.params, values, prefix=key, locate=locate, problems=problems, reserved=reserved)
    for scheduled, schedule in schedules.items() if params is not None else ():
        for extreme in schedule.extremes():  # every value a schedule takes must satisfy the bounds
            if scheduled == "weight" and extreme < 0:
                problems.append(Problem(f"{key}.weight", f"a weight schedule takes the value {extreme}; weights "
                                        "must be >= 0", locate(f"{key}.weight")))
            elif scheduled != "weight":
                validate(component.params, {**values, scheduled: extreme}, prefix=key, locate=locate,
                         problems=problems)
    init = _check_init(key, spec, locations, problems) if kind == "backbone" else INIT_DEFAULTS
    return ComponentSpec(key, component, params, float(weight) if kind == "loss" else 1.0, schedules=schedules,
                         **init)


def _check_init(key: str, spec: dict[str, Any], locations: Locations, problems: list[Problem]) -> dict[str, Any]:
    """The backbone entry's ``init_from`` / ``init_format`` / ``init_min_fraction``, checked."""
    init = {k: spec.get(k, default) for k, default in INIT_DEFAULTS.items()}
    source, layout, fraction = init["init_from"], init["init_format"], init["init_min_fraction"]
    if source is not None and (not isinstance(source, str) or not source):
        problems.append(Problem(f"{key}.init_from", "expected the path of a run directory, checkpoint, weights file "
                                f"or Hugging Face folder (or null), got {source!r}", locations.get(f"{key}.init_from")))
    if not isinstance(layout, str):
        problems.append(Problem(f"{key}.init_format", f"expected a layout name such as 'auto', got {layout!r}",
                                locations.get(f"{key}.init_format")))
    if isinstance(fraction, bool) or not isinstance(fraction, int | float) or not 0.0 <= fraction <= 1.0:
        problems.append(Problem(f"{key}.init_min_fraction", f"expected a number in [0, 1], got {fraction!r}",
                                locations.get(f"{key}.init_min_fraction")))
        init["init_min_fraction"] = INIT_DEFAULTS["init_min_fraction"]
    init["init_min_fraction"] = float(init["init_min_fraction"])
    return init


def _schedules(key: str, kind: str, component: Component, spec: dict[str, Any], locations: Locations,
               problems: list[Problem]) -> tuple[dict[str, ParamSchedule], dict[str, Any]]:
    """The entry's scheduled parameters, and the entry with each replaced by its value at step 0."""
    hints = typing.get_type_hints(component.params)
    schedules: dict[str, ParamSchedule] = {}
    values = dict(spec)
    for name, value in spec.items():
        if not is_schedule(value):
            continue
        where = locations.get(f"{key}.{name}") or locations.get(key)
        if not (name in hints and hints[name] in (float, float | None)) and not (name == "weight" and kind == "loss"):
            problems.append(Problem(f"{key}.{name}", "only float parameters (and a loss's weight) can be scheduled",
                                    where))
            continue
        schedule, found = parse_schedule(value)
        problems.extend(Problem(f"{key}.{name}", message, where) for message in found)
        if schedule is not None:
            schedules[name] = schedule
            values[name] = schedule.value(0, 1, 1)
    return schedules, values


def resolve(data: dict[str, Any], locations: Locations, source: str,
            registry: Registry | None = None) -> ResolvedRecipe:
    """Validate composed recipe ``data``; raise :class:`RecipeError` listing every problem."""
    registry = registry or get_registry()
    problems: list[Problem] = moved_keys(data, locations)
    recipe = validate(Recipe, data, locate=locations.get, problems=problems)
    if recipe is None:
        raise RecipeError(problems, header=f"invalid recipe {source}")
    components: dict[str, ComponentSpec] = {}
    for kind, key, spec in _component_entries(recipe):
        checked = _check_component(kind, key, spec, registry, locations, problems)
        if checked is not None:
            components[key] = checked
    if not recipe.losses:
        problems.append(Problem("losses", "at least one loss is required", locations.get("losses")))
    problems.extend(_teacher_problems(recipe, locations))
    if problems:
        raise RecipeError(problems, header=f"invalid recipe {source}")
    plain = to_dict(recipe)
    for key, checked in components.items():
        entry: dict[str, Any] = {"name": checked.component.name}
        if checked.component.kind == "loss":
            entry["weight"] = checked.weight
        if checked.component.kind == "backbone":
            entry.update({k: getattr(checked, k) for k in INIT_DEFAULTS})
        entry.update(to_dict(checked.params))
        entry.update({name: written for name, written in _entry(recipe, key).items() if name in checked.schedules})
        _set_dotted(plain, key, entry)
    return ResolvedRecipe(recipe, components, plain, source, locations)


def _teacher_problems(recipe: Recipe, locations: Locations) -> list[Problem]:
    """A frozen teacher needs weights; the EMA teacher takes no network of its own."""
    t = recipe.teacher
    if t.mode == "frozen":
        if t.init_from is None:
            return [Problem("teacher.init_from", "required with teacher.mode: frozen (the weights to distil from: an "
                            "sslkit run directory, a checkpoint or an exported backbone)", locations.get("teacher"))]
        unknown = sorted(set(t.heads) - set(recipe.model.heads))
        return [Problem(f"teacher.heads.{n}", f"no head {n!r} in model.heads to pair it with; model.heads: "
                        f"{', '.join(recipe.model.heads) or 'none'}", locations.get(f"teacher.heads.{n}"))
                for n in unknown]
    own = [key for key, value in (("backbone", t.backbone), ("heads", t.heads), ("init_from", t.init_from))
           if value]
    return [Problem(f"teacher.{key}", "only with teacher.mode: frozen (the EMA teacher is a copy of the student)",
                    locations.get(f"teacher.{key}")) for key in own]


def _entry(recipe: Recipe, dotted: str) -> dict[str, Any]:
    """The component entry at ``dotted`` as written (schedules unresolved)."""
    node: Any = recipe
    for part in dotted.split("."):
        node = node[part] if isinstance(node, dict) else getattr(node, part)
    return dict(node)


def _set_dotted(data: dict[str, Any], dotted: str, value: Any) -> None:
    parts = dotted.split(".")
    for part in parts[:-1]:
        data = data[part]
    data[parts[-1]] = value


def load_recipe(path: str | Path, overrides: list[str] | tuple[str, ...] = (),
                registry: Registry | None = None) -> ResolvedRecipe:
    """Load ``path`` with its bases, apply ``KEY=VALUE`` overrides and validate everything."""
    data, locations = load_layers(Path(path))
    data = apply_overrides(data, locations, list(overrides))
    return resolve(data, locations, str(path), registry)


def load_resolved(data: dict[str, Any], source: str, registry: Registry | None = None) -> ResolvedRecipe:
    """Validate an already resolved recipe (e.g. the ``recipe.yaml`` saved in a run directory)."""
    return resolve(data, {}, source, registry)
