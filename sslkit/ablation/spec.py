"""Ablation files: a base recipe, named variants (sets of overrides), seeds and the evaluation.

An ablation file is YAML validated like a recipe (every problem reported with its file and line)::

    description: Block masking (official) vs independent Bernoulli masking.
    recipe: ../cifar10/dinov2_vit_tiny.yaml     # relative to this file
    overrides:                                  # applied to every variant (optional)
      train.max_steps: 600
    variants:
      block: {masking.masker.name: block}
      bernoulli: ["masking.masker.name=bernoulli"]   # KEY=VALUE strings work too
    seeds: [0, 1]
    eval: {knn: true, linear: false}

A run's recipe is composed in this order: the base recipe (with its ``base:`` chain), the
file's ``overrides``, the variant's overrides, the command-line ``KEY=VALUE`` overrides, then
``run.seed`` (from ``seeds``) and ``run.name`` (the variant's name). The ablation owns
``run.seed`` and ``run.name``; a command-line override may not touch a key a variant sets,
since that would erase the difference being measured.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sslkit.errors import Problem, RecipeError, SSLKitError
from sslkit.eval.linear import DEFAULT_LRS
from sslkit.params import param, validate
from sslkit.recipe import ResolvedRecipe
from sslkit.recipe.compose import load_layers, merge
from sslkit.recipe.source import Locations, load_yaml_with_locations, parse_override
from sslkit.recipe.validate import resolve
from sslkit.registry import Registry

VARIANT_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]*$")
#: Recipe keys the ablation sets itself for every run.
OWNED_KEYS = ("run.seed", "run.name")

OverrideSet = dict[str, Any] | list[str] | None


@dataclass
class AblationEval:
    """What is measured after every run (kNN: DINO, Caron et al. 2021, section 4.1; linear probe: DINOv2, Oquab et
    al. 2023, section 7)."""

    knn: bool = param(
        True,
        "Report the kNN accuracy (top-1/top-5, k = eval.k) that each run measures at its end "
        "on the recipe's eval.train_data / eval.test_data pair.",
    )
    linear: bool = param(
        False,
        "Also train a linear probe on the frozen teacher features of the eval pair "
        "after each run (sslkit.eval.linear_probe, with a learning-rate sweep).",
    )
    linear_epochs: int = param(30, "Linear-probe training epochs.", ge=1)
    linear_lrs: tuple[float, ...] = param(
        DEFAULT_LRS,
        "Linear-probe learning-rate sweep; the best on a held-out 10% of the training features is reported.",
    )
    patch_mean: bool = param(False, "Linear-probe features: the CLS token concatenated with the mean patch token.")


@dataclass
class AblationSpec:
    """The schema of an ablation file."""

    recipe: str = param(doc="Base recipe, as a path relative to the ablation file.")
    variants: dict[str, OverrideSet] = param(
        doc="Named variants: each a mapping of dotted recipe keys to values, or a list of KEY=VALUE strings "
        "(null: the base recipe unchanged). Names become directory names: letters, digits, '_' and '-'."
    )
    seeds: tuple[int, ...] = param((0, 1), "Seeds (run.seed) of every variant; results are mean ± std over them.")
    overrides: OverrideSet = param(
        None, "Overrides applied to every variant, below the variants' own (e.g. dataset paths, run length)."
    )
    description: str = param("", "What the ablation measures (shown at the top of summary.md).")
    eval: AblationEval = param(default_factory=AblationEval, doc="Evaluation reported for every run.")


@dataclass(frozen=True)
class Override:
    """One dotted recipe key set to a value, with where it was written."""

    key: str
    value: Any
    source: str

    def render(self) -> str:
        """``key=value`` with the value written as in YAML flow style."""
        return f"{self.key}={render_value(self.value)}"


@dataclass(frozen=True)
class Variant:
    """A named set of overrides."""

    name: str
    overrides: tuple[Override, ...]

    def describe(self) -> str:
        """The variant's overrides as ``key=value, ...`` (``base recipe`` when it has none)."""
        return ", ".join(o.render() for o in self.overrides) or "base recipe"


def render_value(value: Any) -> str:
    """A value as written in YAML flow style (``true``, ``0.5``, ``block``, ``{name: dinov2}``)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {render_value(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list | tuple):
        return "[" + ", ".join(render_value(v) for v in value) + "]"
    return str(value)


def _leaf_keys(key: str, value: Any) -> list[str]:
    if isinstance(value, dict) and value:
        return [leaf for k, v in value.items() for leaf in _leaf_keys(f"{key}.{k}", v)]
    return [key]


def _overlaps(a: str, b: str) -> bool:
    """Whether dotted keys ``a`` and ``b`` address the same value or one contains the other."""
    return a == b or a.startswith(b + ".") or b.startswith(a + ".")


def _parse_set(value: OverrideSet, where: str, locations: Locations, problems: list[Problem]) -> list[Override]:
    """Overrides from a mapping of dotted keys or a list of KEY=VALUE strings written under ``where``."""
    found: list[Override] = []
    if isinstance(value, dict):
        for key, item in value.items():
            source = locations.get(f"{where}.{key}") or locations.get(where, where)
            if any(not part.isidentifier() for part in key.split(".")):
                problems.append(Problem(f"{where}.{key}", f"{key!r} is not a dotted recipe key", source))
            else:
                found.append(Override(key, item, source))
    elif isinstance(value, list):
        for i, text in enumerate(value):
            source = locations.get(f"{where}[{i}]") or locations.get(where, where)
            try:
                key, item = parse_override(text)
            except SSLKitError as exc:
                problems.append(Problem(f"{where}[{i}]", str(exc), source))
                continue
            found.append(Override(key, item, source))
    for override in found:
        for leaf in _leaf_keys(override.key, override.value):
            if leaf in OWNED_KEYS:
                problems.append(
                    Problem(
                        where, f"{leaf} is set by the ablation itself (seeds / the variant's name)", override.source
                    )
                )
    return found


def _apply(data: dict[str, Any], locations: Locations, override: Override) -> dict[str, Any]:
    """``data`` with one override merged in (recipe composition rules), recording its source."""
    patch: dict[str, Any] = {}
    node = patch
    parts = override.key.split(".")
    for part in parts[:-1]:
        node[part] = {}
        node = node[part]
    node[parts[-1]] = override.value
    for leaf in _leaf_keys(override.key, override.value):
        locations[leaf] = override.source
    locations[override.key] = override.source
    return merge(data, patch)


@dataclass
class Ablation:
    """A validated ablation file, ready to compose the recipe of every (variant, seed) run."""

    path: Path
    spec: AblationSpec
    recipe_path: Path
    common: tuple[Override, ...]
    variants: tuple[Variant, ...]
    command_line: tuple[Override, ...] = ()
    locations: Locations = field(default_factory=dict)

    @property
    def name(self) -> str:
        return self.path.stem

    @property
    def seeds(self) -> tuple[int, ...]:
        return self.spec.seeds

    def variant(self, name: str) -> Variant:
        for variant in self.variants:
            if variant.name == name:
                return variant
        raise SSLKitError(f"{self.path}: no variant {name!r}; variants: {', '.join(v.name for v in self.variants)}")

    def compose(self, variant: Variant, seed: int, registry: Registry | None = None) -> ResolvedRecipe:
        """The validated recipe of one run (see the module docstring for the layer order)."""
        data, locations = load_layers(self.recipe_path)
        for override in (*self.common, *variant.overrides, *self.command_line):
            data = _apply(data, locations, override)
        data = merge(data, {"run": {"seed": seed, "name": variant.name}})
        source = f"{self.recipe_path} (ablation {self.path}, variant {variant.name}, seed {seed})"
        resolved = resolve(data, locations, source, registry)
        self._check_eval(resolved, variant)
        return resolved

    def _check_eval(self, resolved: ResolvedRecipe, variant: Variant) -> None:
        config = resolved.recipe.eval
        wanted = [k for k in ("knn", "linear") if getattr(self.spec.eval, k)]
        if not wanted:
            return
        if config.train_data is None or config.test_data is None:
            raise SSLKitError(
                f"{self.locations.get('eval', self.path)}: eval: {' and '.join(wanted)} need the recipe's "
                f"eval.train_data and eval.test_data (variant {variant.name} has none): set them in the ablation's "
                f"overrides, or set eval.knn: false"
            )
        if self.spec.eval.knn and not config.at_end:
            raise SSLKitError(
                f"{self.locations.get('eval.knn', self.path)}: eval.knn needs the recipe's "
                f"eval.at_end: true (variant {variant.name} has false)"
            )

    def compose_all(self, registry: Registry | None = None) -> dict[tuple[str, int], ResolvedRecipe]:
        """Every run's recipe, validated up front; the problems of all variants are reported together."""
        runs: dict[tuple[str, int], ResolvedRecipe] = {}
        problems: list[Problem] = []
        for variant in self.variants:
            for seed in self.seeds:
                try:
                    runs[variant.name, seed] = self.compose(variant, seed, registry)
                except RecipeError as exc:
                    problems += [p for p in exc.problems if p not in problems]
                    break  # the other seeds of this variant would repeat the same problems
        if problems:
            raise RecipeError(problems, header=f"invalid ablation {self.path}")
        return runs


def load_ablation(path: str | Path, overrides: list[str] | tuple[str, ...] = ()) -> Ablation:
    """Read and validate an ablation file; ``overrides`` are command-line KEY=VALUE for every variant."""
    path = Path(path)
    if path.is_dir():
        raise SSLKitError(f"{path} is a directory; expected an ablation YAML file")
    raw, locations = load_yaml_with_locations(path)
    problems: list[Problem] = []
    spec = validate(AblationSpec, raw, locate=locations.get, problems=problems)
    if spec is None:
        raise RecipeError(problems, header=f"invalid ablation {path}")
    recipe_path = (path.parent / spec.recipe).resolve()
    if not recipe_path.is_file():
        problems.append(
            Problem(
                "recipe", f"base recipe not found: {spec.recipe} (looked at {recipe_path})", locations.get("recipe")
            )
        )
    if not spec.variants:
        problems.append(Problem("variants", "at least one variant is required", locations.get("variants")))
    if not spec.seeds:
        problems.append(Problem("seeds", "at least one seed is required", locations.get("seeds")))
    if len(set(spec.seeds)) != len(spec.seeds) or any(s < 0 for s in spec.seeds):
        problems.append(
            Problem("seeds", f"seeds must be distinct integers >= 0, got {list(spec.seeds)}", locations.get("seeds"))
        )
    common = _parse_set(spec.overrides, "overrides", locations, problems)
    variants = []
    for name, value in spec.variants.items():
        if not VARIANT_NAME.match(name):
            problems.append(
                Problem(
                    f"variants.{name}",
                    "variant names may hold only letters, digits, '_' and '-' (they name directories)",
                    locations.get(f"variants.{name}"),
                )
            )
        variants.append(Variant(name, tuple(_parse_set(value, f"variants.{name}", locations, problems))))
    command_line = []
    for text in overrides:
        key, value = parse_override(text)
        command_line.append(Override(key, value, f"command line ({text})"))
    for override in command_line:
        for leaf in _leaf_keys(override.key, override.value):
            if leaf in OWNED_KEYS:
                problems.append(
                    Problem(leaf, "is set by the ablation itself (seeds / the variant's name)", override.source)
                )
        for variant in variants:
            clash = [o.key for o in variant.overrides if _overlaps(o.key, override.key)]
            if clash:
                problems.append(
                    Problem(
                        override.key,
                        f"would override variant {variant.name}'s {clash[0]} and erase "
                        "the difference being measured; edit the ablation file instead",
                        override.source,
                    )
                )
    if problems:
        raise RecipeError(problems, header=f"invalid ablation {path}")
    return Ablation(path, spec, recipe_path, tuple(common), tuple(variants), tuple(command_line), locations)
