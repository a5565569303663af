"""The ``sslkit`` command line: ``sslkit --help`` lists the commands."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from sslkit import __version__
from sslkit.cli import (
    ablate_cmd,
    data_cmd,
    eval_cmd,
    export_cmd,
    new_plugin_cmd,
    plugins_cmd,
    recipe_cmd,
    train_cmd,
)
from sslkit.errors import SSLKitError

DESCRIPTION = """\
sslkit: self-supervised pretraining of vision backbones (DINO / DINOv2 family and plugins).

A YAML recipe names the plugins (backbone, heads, losses, masker, crop policy, optimizer
groups, dataset, augmentation) and their parameters; KEY=VALUE arguments override any key.

examples:
  sslkit train recipes/quickstart.yaml --output-dir runs/quickstart
  sslkit train recipes/cifar10/dinov2_vit_tiny.yaml data.dataset.path=../shared/data/cifar10/train.tar \\
      --output-dir runs/cifar
  sslkit recipe show recipes/dinov2/vits14.yaml optim.base_lr=0.002
  sslkit plugins --kind loss
  sslkit eval knn --checkpoint runs/quickstart --train-data DIR_OR_TAR --test-data DIR_OR_TAR
  sslkit export --checkpoint runs/quickstart --out backbone.safetensors
  sslkit ablate recipes/ablations/crop_selection.yaml --output-dir runs/ablation train.max_steps=300
  sslkit new-plugin my-loss
  sslkit data shard /data/images /data/shards --shard-size 5000
  torchrun --nproc_per_node 4 -m sslkit train RECIPE --output-dir DIR
"""

COMMANDS = (plugins_cmd, recipe_cmd, train_cmd, eval_cmd, export_cmd, ablate_cmd, new_plugin_cmd, data_cmd)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="sslkit", description=DESCRIPTION,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"sslkit {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging and tracebacks on errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for command in COMMANDS:
        command.add_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``sslkit`` console script and ``python -m sslkit``."""
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra:  # KEY=VALUE overrides may come after options (argparse stops collecting positionals there)
        if not hasattr(args, "overrides") or any(x.startswith("-") or "=" not in x for x in extra):
            parser.error(f"unrecognized arguments: {' '.join(extra)}")
        args.overrides = [*args.overrides, *extra]
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt="%H:%M:%S")
    try:
        return int(args.run(args) or 0)
    except SSLKitError as exc:
        if args.verbose:
            raise
        print(f"sslkit: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("sslkit: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
