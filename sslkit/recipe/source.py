"""Reading recipe YAML with the safe loader while remembering where every key was written.

Locations are ``"path/to/recipe.yaml:LINE"`` strings keyed by dotted key, so that validation
errors can point at the exact line of the file (or at the command line) that set a value.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

from sslkit.errors import SSLKitError

Locations = dict[str, str]


class RecipeLoader(yaml.SafeLoader):
    """The safe loader, also reading ``1e-4`` as a number (YAML 1.1 requires ``1.0e-4``)."""


RecipeLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*)(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"),
    list("-+0123456789"),
)


_PLAIN_TAGS = ("tag:yaml.org,2002:map", "tag:yaml.org,2002:seq")


def _construct(node: yaml.Node, loader: RecipeLoader, prefix: str, where: str, locations: Locations) -> Any:
    if isinstance(node, yaml.MappingNode | yaml.SequenceNode) and node.tag not in _PLAIN_TAGS:
        return loader.construct_object(node, deep=True)  # the safe loader refuses unknown tags
    if isinstance(node, yaml.MappingNode):
        loader.flatten_mapping(node)
        result: dict[str, Any] = {}
        for key_node, value_node in node.value:
            key = loader.construct_object(key_node, deep=True)
            if not isinstance(key, str):
                raise SSLKitError(f"{where}:{key_node.start_mark.line + 1}: keys must be strings, got {key!r}")
            dotted = f"{prefix}.{key}" if prefix else key
            if key in result:
                raise SSLKitError(f"{where}:{key_node.start_mark.line + 1}: duplicate key {dotted!r}")
            locations[dotted] = f"{where}:{key_node.start_mark.line + 1}"
            result[key] = _construct(value_node, loader, dotted, where, locations)
        return result
    if isinstance(node, yaml.SequenceNode):
        return [_construct(v, loader, f"{prefix}[{i}]", where, locations) for i, v in enumerate(node.value)]
    return loader.construct_object(node, deep=True)


def load_yaml_with_locations(path: Path) -> tuple[dict[str, Any], Locations]:
    """Load one YAML mapping with the safe loader; return it and the line of every dotted key."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise SSLKitError(f"recipe file not found: {path}") from None
    except OSError as exc:
        raise SSLKitError(f"cannot read recipe {path}: {exc}") from None
    loader = RecipeLoader(text)
    locations: Locations = {}
    try:
        node = loader.get_single_node()
        data = {} if node is None else _construct(node, loader, "", str(path), locations)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f":{mark.line + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise SSLKitError(f"{path}{line}: invalid YAML: {problem}") from None
    finally:
        loader.dispose()
    if not isinstance(data, dict):
        raise SSLKitError(f"{path}: a recipe must be a YAML mapping at the top level, got {type(data).__name__}")
    return data, locations


def parse_override(text: str) -> tuple[str, Any]:
    """Split a command-line ``KEY=VALUE`` (dotted key, value parsed as YAML)."""
    key, sep, raw = text.partition("=")
    key = key.strip()
    if not sep or not key:
        raise SSLKitError(f"override {text!r} must look like KEY=VALUE (e.g. train.max_steps=100)")
    if any(not part.isidentifier() for part in key.split(".")):
        raise SSLKitError(f"override {text!r}: {key!r} is not a dotted key of identifiers")
    try:
        value = yaml.load(raw, Loader=RecipeLoader) if raw.strip() else None
    except yaml.YAMLError as exc:
        raise SSLKitError(f"override {text!r}: value is not valid YAML: {exc}") from None
    return key, value
