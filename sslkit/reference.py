"""Generated documentation: the recipe reference (core keys and every registered plugin's
parameters, from their schemas) and the CLI reference (from the argument parser).

``python -m sslkit.reference docs/reference`` rewrites the pages; a test fails when the
committed pages differ from what the code generates, or when a parameter has no documentation.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import typing
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sslkit.params import field_doc, type_name
from sslkit.recipe.schema import Recipe
from sslkit.registry import KINDS, Registry, get_registry

if TYPE_CHECKING:
    from _typeshed import DataclassInstance


def _default(f: dataclasses.Field[Any]) -> str:
    if f.default is not dataclasses.MISSING:
        value = f.default
    elif f.default_factory is not dataclasses.MISSING:
        value = f.default_factory()
        if dataclasses.is_dataclass(value):
            return "(section)"
    else:
        return "**required**"
    return f"`{value!r}`" if not isinstance(value, dict) or len(repr(value)) < 60 else "(mapping)"


def _bounds(f: dataclasses.Field[Any]) -> str:
    parts = [f"{sym} {f.metadata[k]}" for k, sym in (("ge", ">="), ("gt", ">"), ("le", "<="), ("lt", "<"))
             if f.metadata.get(k) is not None]
    return ", ".join(parts)


def schema_table(schema: type[DataclassInstance], prefix: str = "") -> list[str]:
    """A markdown table of a schema's fields: key, type, default, documentation."""
    hints = typing.get_type_hints(schema)
    rows = ["| key | type | default | description |", "| --- | --- | --- | --- |"]
    for f in dataclasses.fields(schema):
        if dataclasses.is_dataclass(hints[f.name]):
            continue
        doc = field_doc(f).replace("|", "\\|")
        bounds = _bounds(f)
        kind = type_name(hints[f.name]).replace("|", "\\|")
        rows.append(f"| `{prefix}{f.name}` | {kind}{' (' + bounds + ')' if bounds else ''} | {_default(f)} | {doc} |")
    return rows


def undocumented(registry: Registry | None = None) -> list[str]:
    """Parameters (core and plugin) without documentation, as ``kind name.param``."""
    registry = registry or get_registry()
    missing = []
    schemas: list[tuple[str, type[DataclassInstance]]] = [("recipe", Recipe)]
    hints = typing.get_type_hints(Recipe)
    schemas += [(f"recipe {f.name}", hints[f.name]) for f in dataclasses.fields(Recipe)
                if dataclasses.is_dataclass(hints[f.name])]
    schemas += [(f"{c.kind} {c.name}", c.params) for c in registry.list()]
    for label, schema in schemas:
        missing += [f"{label}.{f.name}" for f in dataclasses.fields(schema) if not field_doc(f).strip()]
    missing += [f"{c.kind} {c.name} (summary)" for c in registry.list() if not c.summary]
    return missing


def render_recipe_reference(registry: Registry | None = None) -> str:
    """The whole recipe reference page as markdown."""
    registry = registry or get_registry()
    lines = ["# Recipe reference", "",
             "Generated from the code by `python -m sslkit.reference docs/reference`: the core keys, then every "
             "registered plugin's parameters. A component entry is a mapping with `name` (the plugin) and that "
             "plugin's parameters; loss entries also take `weight`.", ""]
    hints = typing.get_type_hints(Recipe)
    for f in dataclasses.fields(Recipe):
        lines += [f"## `{f.name}`", "", field_doc(f), ""]
        section = hints[f.name]
        if isinstance(section, type) and dataclasses.is_dataclass(section):
            if section.__doc__:
                lines += [section.__doc__.strip(), ""]
            lines += [*schema_table(section, f"{f.name}."), ""]
    lines += ["# Plugins", ""]
    for kind in KINDS:
        for c in registry.list(kind):
            if c.provider.distribution != "sslkit":
                continue
            lines += [f"## {kind} `{c.name}`", "", c.summary, "", f"Provider: `{c.provider.module}`", ""]
            lines += [*schema_table(c.params), ""] if dataclasses.fields(c.params) else ["No parameters.", ""]
    return "\n".join(lines).rstrip() + "\n"


def _walk(parser: argparse.ArgumentParser, prog: str, level: int) -> list[str]:
    lines = [f"{'#' * level} `{prog}`", "", "```text", parser.format_help().rstrip(), "```", ""]
    for action in parser._actions:  # argparse exposes sub-commands only through its actions
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                lines += _walk(sub, f"{prog} {name}", min(level + 1, 4))
    return lines


def render_cli_reference() -> str:
    """Every command's ``--help``, as markdown."""
    from sslkit.cli.main import build_parser

    previous = os.environ.get("COLUMNS")
    os.environ["COLUMNS"] = "100"  # argparse wraps to the terminal width: make the page reproducible
    try:
        parser = build_parser()
        parser.prog = "sslkit"
        lines = _walk(parser, "sslkit", 2)
    finally:
        if previous is None:
            del os.environ["COLUMNS"]
        else:
            os.environ["COLUMNS"] = previous
    return "\n".join(["# CLI reference", "", "Generated from the argument parser.", "", *lines])


def write_pages(folder: Path) -> list[Path]:
    """Write ``recipe.md`` and ``cli.md`` into ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    pages = {"recipe.md": render_recipe_reference(), "cli.md": render_cli_reference()}
    written = []
    for name, text in pages.items():
        (folder / name).write_text(text, encoding="utf-8")
        written.append(folder / name)
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sslkit.reference",
                                     description="Regenerate the recipe and CLI reference pages.")
    parser.add_argument("folder", nargs="?", default="docs/reference", type=Path,
                        help="where to write recipe.md and cli.md (default: docs/reference)")
    args = parser.parse_args(argv)
    for path in write_pages(args.folder):
        print(path)
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())


__all__ = ["render_cli_reference", "render_recipe_reference", "undocumented", "write_pages"]
