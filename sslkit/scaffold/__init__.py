"""Scaffolding of plugin distributions (``sslkit new-plugin``).

:func:`scaffold_plugin` writes a pip-installable project whose component works and is tested
from the start::

    sslkit-NAME/              # NAME with hyphens; NAME may be given either way (my-loss or my_loss)
      pyproject.toml          # the ``sslkit`` entry point, dependency on sslkit
      README.md               # install, test, recipe usage, publishing
      sslkit_NAME/__init__.py # the registration hook
      sslkit_NAME/KIND.py     # the component and its parameter dataclass
      tests/test_NAME_KIND.py # formula / behaviour, contract, registration, a few training steps
      recipes/NAME_tiny.yaml  # a self-contained CPU recipe using the component (about a minute)
"""

from __future__ import annotations

import json
import keyword
import re
from dataclasses import dataclass
from pathlib import Path
from string import Template
from types import ModuleType
from typing import Any

import yaml

from sslkit import __version__
from sslkit.errors import SSLKitError
from sslkit.hookspecs import KIND_HOOKS
from sslkit.scaffold import loss, masker, project
from sslkit.testing.training import tiny_recipe

#: Component kinds with a template, and the template module of each.
TEMPLATES: dict[str, ModuleType] = {"loss": loss, "masker": masker}
_NAME = re.compile(r"^[a-z][a-z0-9_]*$")


def default_summary(name: str, kind: str) -> str:
    """The one-line summary of a scaffolded component when ``--summary`` is not given."""
    return f"The sslkit {kind} '{name}'."


@dataclass(frozen=True)
class PluginNames:
    """The names a scaffolded plugin is made of, derived from the component name.

    A name written with hyphens, as distributions are (``my-loss``), gives the same names as
    with underscores (``my_loss``): hyphens are not allowed in recipe keys and imports.
    """

    name: str  # component name in recipes, e.g. "cosine_distill"
    kind: str  # component kind, e.g. "loss"
    dist: str  # distribution name, e.g. "sslkit-cosine-distill"
    package: str  # import name, e.g. "sslkit_cosine_distill"
    cls: str  # component class, e.g. "CosineDistillLoss"

    @classmethod
    def derive(cls, name: str, kind: str) -> PluginNames:
        given, name = name, name.replace("-", "_")
        if not _NAME.match(name) or keyword.iskeyword(name) or name.endswith("_"):
            raise SSLKitError(f"plugin name {given!r} must be lowercase letters and digits, in words joined by "
                              "underscores or hyphens, starting with a letter and not a Python keyword, such as "
                              "'cosine_distill' or 'my-loss'")
        if kind not in TEMPLATES:
            raise SSLKitError(f"no template for kind {kind!r}; available: {', '.join(TEMPLATES)}")
        stem = name if name.startswith("sslkit_") else f"sslkit_{name}"
        camel = "".join(part.capitalize() for part in name.split("_") if part)
        suffix = "".join(part.capitalize() for part in kind.split("_"))
        return cls(name=name, kind=kind, dist=stem.replace("_", "-"), package=stem,
                   cls=camel if camel.endswith(suffix) else camel + suffix)


def example_recipe(names: PluginNames) -> str:
    """A self-contained CPU recipe (sslkit's tiny test recipe, 50 steps) that uses the component."""
    recipe: dict[str, Any] = tiny_recipe()
    recipe["train"] = {"max_steps": 50, "epoch_length": 50, "checkpoint_every": 50, "log_every": 10}
    TEMPLATES[names.kind].add_to_recipe(recipe, names.name)
    header = (f"# {names.dist}: a tiny CPU run with the {names.kind} '{names.name}' (procedural images, ViT-tiny).\n"
              f"#   sslkit train recipes/{names.name}_tiny.yaml --output-dir runs/{names.name}_tiny\n")
    return header + yaml.safe_dump(recipe, sort_keys=False, default_flow_style=None)


def _check_summary(summary: str) -> str:
    summary = summary.strip()
    if not summary or "\n" in summary or "\r" in summary:
        raise SSLKitError(f"--summary {summary!r} must be one non-empty line (it becomes the distribution's "
                          "description and the summary that 'sslkit plugins' lists)")
    return summary


def render(names: PluginNames, summary: str | None = None) -> dict[str, str]:
    """The scaffolded project's files (relative path -> text); ``summary`` is the component's
    one-line description (default: :func:`default_summary`)."""
    template = TEMPLATES[names.kind]
    summary = _check_summary(default_summary(names.name, names.kind) if summary is None else summary)
    values = {"name": names.name, "kind": names.kind, "dist": names.dist, "package": names.package,
              "module": names.kind, "cls": names.cls, "hook": KIND_HOOKS[names.kind], "summary": summary,
              "summary_quoted": json.dumps(summary, ensure_ascii=False),  # a valid TOML and Python string
              "sslkit_version": __version__}
    values["usage"] = Template(template.USAGE).substitute(values)
    files = {
        "pyproject.toml": project.PYPROJECT,
        "README.md": project.README,
        f"{names.package}/__init__.py": project.INIT,
        f"{names.package}/{names.kind}.py": template.MODULE,
        f"tests/test_{names.name}_{names.kind}.py": template.TEST,
    }
    rendered = {path: Template(text).substitute(values) for path, text in files.items()}
    rendered[f"recipes/{names.name}_tiny.yaml"] = example_recipe(names)
    return rendered


def scaffold_plugin(name: str, kind: str = "loss", directory: Path | None = None,
                    summary: str | None = None) -> tuple[Path, PluginNames]:
    """Write the project of component ``name`` of ``kind`` into ``directory`` (default
    ``./sslkit-NAME``, which must not exist or be empty), described by ``summary``; return the
    directory and the names."""
    names = PluginNames.derive(name, kind)
    files = render(names, summary)
    target = Path(directory) if directory is not None else Path.cwd() / names.dist
    if target.exists() and (not target.is_dir() or any(target.iterdir())):
        raise SSLKitError(f"{target} already exists and is not an empty directory; choose another --dir")
    for relative, text in files.items():
        path = target / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    return target, names


__all__ = ["TEMPLATES", "PluginNames", "default_summary", "example_recipe", "render", "scaffold_plugin"]
