"""``sslkit new-plugin NAME [--kind loss] [--dir DIR] [--summary TEXT]``: scaffold a plugin distribution."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from sslkit.scaffold import TEMPLATES, default_summary, scaffold_plugin


def add_parser(sub: Any) -> None:
    p = sub.add_parser(
        "new-plugin", help="create a pip-installable plugin project (component, tests, packaging)",
        description="Create a plugin distribution for component NAME: pyproject.toml with the 'sslkit' entry "
                    "point, a working component with its parameter dataclass, tests that use sslkit.testing, "
                    "and a README. Then: cd DIR && pip install -e . && pytest. "
                    "Tutorial: docs/plugins/tutorial.md.")
    p.add_argument("name", help="component name, lowercase words joined by '_' or '-'; the name my-loss gives the "
                                "component my_loss in the distribution sslkit-my-loss (import name sslkit_my_loss)")
    p.add_argument("--kind", choices=tuple(TEMPLATES), default="loss", help="component kind (default: loss)")
    p.add_argument("--dir", type=Path, default=None,
                   help="project directory to create (default: ./sslkit-NAME with hyphens); must be new or empty")
    p.add_argument("--summary", default=None,
                   help="one line saying what the component computes: the distribution's description and the "
                        f"summary 'sslkit plugins' lists (default: {default_summary('NAME', 'KIND')!r})")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    target, names = scaffold_plugin(args.name, args.kind, args.dir, args.summary)
    print(f"created {names.dist} in {target}: {names.kind} {names.name!r} ({names.package}.{names.kind}.{names.cls})")
    print("next steps:")
    print(f"  cd {target}")
    print("  pip install -e .                 # registers the plugin through its entry point")
    print("  pytest                           # formula, contract, registration, a few training steps")
    print(f"  sslkit plugins --kind {names.kind} '{names.name}'")
    return 0
