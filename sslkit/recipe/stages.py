"""Multi-stage recipes: the ``stages:`` list of one recipe file, each stage the recipe with its
``changes`` merged on top (like a recipe layer), run one after another by ``sslkit train``.

Stage ``i > 0`` continues from stage ``i - 1`` (``init_from: <output-dir>/<previous stage>``) unless
its changes set ``init_from``; command-line overrides apply to every stage. Every stage is validated
before the first one trains, so a typo in the last stage fails at once, not hours later.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from sslkit.errors import Problem, RecipeError
from sslkit.recipe.compose import apply_overrides, load_layers, merge
from sslkit.recipe.validate import ResolvedRecipe, resolve
from sslkit.registry import Registry


@dataclass(frozen=True)
class Stage:
    """One stage: its name (``""`` for a recipe without stages), run directory and resolved recipe."""

    name: str
    output_dir: Path
    resolved: ResolvedRecipe


def load_stages(path: str | Path, overrides: list[str] | tuple[str, ...], output_dir: Path,
                registry: Registry | None = None) -> list[Stage]:
    """The stages of the recipe at ``path``: one stage into ``output_dir`` when it has none, else one per
    entry of ``stages`` into ``output_dir/<name>``."""
    data, locations = load_layers(Path(path))
    raw = data.pop("stages", None) or []
    if not raw:
        data = apply_overrides(data, locations, list(overrides))
        return [Stage("", output_dir, resolve(data, locations, str(path), registry))]
    problems = _shape_problems(raw, locations.get("stages"))
    if problems:
        raise RecipeError(problems, header=f"invalid recipe {path}")
    stages: list[Stage] = []
    for i, entry in enumerate(raw):
        changes = dict(entry.get("changes") or {})
        stage_data = merge(data, changes)
        if i > 0 and "init_from" not in changes:
            stage_data["init_from"] = str(stages[-1].output_dir)
        stage_locations = dict(locations)
        stage_data = apply_overrides(stage_data, stage_locations, list(overrides))
        resolved = resolve(stage_data, stage_locations, f"{path} (stage {entry['name']})", registry)
        stages.append(Stage(entry["name"], output_dir / entry["name"], resolved))
    return stages


def _shape_problems(raw: object, where: str | None) -> list[Problem]:
    if not isinstance(raw, list):
        return [Problem("stages", f"expected a list of {{name: ..., changes: {{...}}}}, got {raw!r}", where)]
    problems: list[Problem] = []
    seen: set[str] = set()
    for i, entry in enumerate(raw):
        key = f"stages[{i}]"
        if not isinstance(entry, dict):
            problems.append(Problem(key, f"expected a mapping {{name: ..., changes: {{...}}}}, got {entry!r}", where))
            continue
        unknown = sorted(set(entry) - {"name", "changes"})
        if unknown:
            problems.append(Problem(key, f"unknown keys {unknown}; allowed: changes, name", where))
        name = entry.get("name")
        if not isinstance(name, str) or not name or "/" in name or name in (".", ".."):
            problems.append(Problem(f"{key}.name", f"required: a directory name for the stage's run, got {name!r}",
                                    where))
        elif name in seen:
            problems.append(Problem(f"{key}.name", f"stage name {name!r} is used twice", where))
        else:
            seen.add(name)
        if not isinstance(entry.get("changes", {}), dict):
            problems.append(Problem(f"{key}.changes", "expected a mapping of recipe keys", where))
    return problems
