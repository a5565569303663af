"""Composing a recipe from its layers: defaults, ``base:`` recipes, the recipe, overrides.

Rules (the same at every depth):
- ``base:`` is a path or a list of paths, relative to the file that names it; bases are merged
  in order, then the file itself on top; cycles are errors.
- Mappings merge key by key; any other value replaces what was below.
- A component mapping (one with a ``name``) whose ``name`` changes replaces the one below
  entirely, since the old component's parameters do not apply to the new one.
- ``null`` under ``losses`` or ``model.heads`` removes that entry.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

from sslkit.errors import SSLKitError
from sslkit.recipe.source import Locations, load_yaml_with_locations, parse_override

REMOVABLE_PARENTS = ("losses", "model.heads")


def merge(base: dict[str, Any], top: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Deep-merge ``top`` onto ``base`` (neither is modified) following the module's rules."""
    result = copy.deepcopy(base)
    for key, value in top.items():
        dotted = f"{prefix}.{key}" if prefix else key
        below = result.get(key)
        if value is None and prefix in REMOVABLE_PARENTS:
            result.pop(key, None)
        elif isinstance(value, dict) and isinstance(below, dict):
            renamed = "name" in value and "name" in below and value["name"] != below["name"]
            result[key] = copy.deepcopy(value) if renamed else merge(below, value, dotted)
        else:
            result[key] = copy.deepcopy(value)
    return result


def _drop_stale(locations: Locations, data: dict[str, Any]) -> Locations:
    def exists(dotted: str) -> bool:
        node: Any = data
        for part in dotted.replace("[", ".[").split("."):
            if part.startswith("["):
                return True
            if not isinstance(node, dict) or part not in node:
                return False
            node = node[part]
        return True

    return {k: v for k, v in locations.items() if exists(k)}


def load_layers(path: Path, _stack: tuple[Path, ...] = ()) -> tuple[dict[str, Any], Locations]:
    """Load ``path`` with its ``base:`` chain merged below it."""
    path = path.resolve()
    if path in _stack:
        chain = " -> ".join(str(p) for p in (*_stack, path))
        raise SSLKitError(f"recipe inheritance cycle: {chain}")
    data, locations = load_yaml_with_locations(path)
    bases = data.pop("base", None)
    if bases is None:
        return data, locations
    if isinstance(bases, str):
        bases = [bases]
    if not isinstance(bases, list) or not all(isinstance(b, str) for b in bases):
        raise SSLKitError(f"{locations.get('base', path)}: base: expected a path or a list of paths, got {bases!r}")
    merged: dict[str, Any] = {}
    merged_locations: Locations = {}
    for base in bases:
        base_path = (path.parent / base)
        if not base_path.exists():
            raise SSLKitError(f"{locations.get('base', path)}: base recipe not found: {base} (looked at {base_path})")
        base_data, base_locations = load_layers(base_path, (*_stack, path))
        merged = merge(merged, base_data)
        merged_locations.update(base_locations)
    merged = merge(merged, data)
    merged_locations.update({k: v for k, v in locations.items() if k != "base"})
    return merged, _drop_stale(merged_locations, merged)


def apply_overrides(data: dict[str, Any], locations: Locations, overrides: list[str]) -> dict[str, Any]:
    """Apply command-line ``KEY=VALUE`` overrides (dotted keys) on top of ``data``."""
    for text in overrides:
        key, value = parse_override(text)
        parts = key.split(".")
        patch: dict[str, Any] = {parts[-1]: value}
        for part in reversed(parts[:-1]):
            patch = {part: patch}
        data = merge(data, patch)
        locations[key] = f"command line ({text})"
    return data
