"""``sslkit recipe show|check``: the fully resolved recipe, or validation without training."""

from __future__ import annotations

import argparse
from typing import Any

import yaml

from sslkit.recipe import load_recipe


def add_parser(sub: Any) -> None:
    p = sub.add_parser("recipe", help="show or check a recipe",
                       description="Resolve a recipe (bases, overrides, defaults) and print or validate it.")
    actions = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    show = actions.add_parser("show", help="print the fully resolved recipe")
    check = actions.add_parser("check", help="validate a recipe without training")
    for q in (show, check):
        q.add_argument("recipe", help="recipe YAML file")
        q.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="overrides (dotted keys, YAML values)")
    show.set_defaults(run=run_show)
    check.set_defaults(run=run_check)


def run_show(args: argparse.Namespace) -> int:
    resolved = load_recipe(args.recipe, args.overrides)
    print(yaml.safe_dump(resolved.data, sort_keys=False, default_flow_style=None), end="")
    return 0


def run_check(args: argparse.Namespace) -> int:
    resolved = load_recipe(args.recipe, args.overrides)
    r = resolved.recipe
    print(f"{args.recipe}: OK ({r.model.backbone['name']} backbone, losses {', '.join(r.losses)}, "
          f"{r.train.max_steps} steps)")
    return 0
