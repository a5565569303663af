"""``sslkit data shard``: write an image folder as WebDataset-style tar shards for the ``shards`` dataset."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any


def add_parser(sub: Any) -> None:
    p = sub.add_parser("data", help="prepare datasets (write or index tar shards)")
    tools = p.add_subparsers(dest="tool", metavar="TOOL", required=True)
    shard = tools.add_parser(
        "shard", help="write an image folder as tar shards (WebDataset layout) with their index",
        description="Write the images under SRC (class sub-folders give labels; a flat folder is unlabelled) as "
                    "DST/<prefix>-000000.tar, ... holding <key>.<ext> and <key>.cls, in a shuffled, deterministic "
                    "order, plus the index files that the 'shards' dataset reads (index.json, <shard>.idx) and "
                    "classes.txt. Prints the brace pattern to put in a recipe.")
    shard.add_argument("src", metavar="SRC", help="image folder (class sub-folders or flat)")
    shard.add_argument("dst", metavar="DST", help="output folder (must be empty unless --overwrite)")
    shard.add_argument("--shard-size", type=int, required=True, help="images per shard (e.g. 1000 to 10000)")
    shard.add_argument("--prefix", default="train", help="shard file name prefix (default: train)")
    shard.add_argument("--seed", type=int, default=0, help="seed of the shuffled writing order (default: 0)")
    shard.add_argument("--no-shuffle", action="store_true", help="keep the sorted order (class by class)")
    shard.add_argument("--overwrite", action="store_true", help="replace shards and index files already in DST")
    shard.set_defaults(run=run_shard)
    index = tools.add_parser(
        "index", help="write the index files of existing WebDataset-style shards",
        description="Read the tar headers of the shards PATTERN names (brace ranges/lists, glob wildcards) once and "
                    "write <shard>.idx and index.json beside them, so that the 'shards' dataset opens them without "
                    "reading headers. Label members: .cls, .label or .txt holding an integer.")
    index.add_argument("pattern", metavar="PATTERN", help="e.g. 'shards/train-{000000..001023}.tar' (quote it)")
    index.set_defaults(run=run_index)


class _ProgressLine:
    """A progress line on stderr (files/s, ETA), redrawn at most every half second."""

    def __init__(self) -> None:
        self.last = -1.0

    def __call__(self, done: int, total: int, seconds: float) -> None:
        if done < total and seconds - self.last < 0.5:
            return
        self.last = seconds
        rate = done / seconds if seconds > 0 else 0.0
        eta = (total - done) / rate if rate > 0 else 0.0
        end = "\n" if done == total else ""
        print(f"\r{done}/{total} files, {rate:,.0f} files/s, ETA {eta:,.0f} s ", end=end, file=sys.stderr, flush=True)


def run_shard(args: argparse.Namespace) -> int:
    from sslkit.data.shard_writer import write_shards

    summary = write_shards(args.src, args.dst, shard_size=args.shard_size, prefix=args.prefix,
                           seed=None if args.no_shuffle else args.seed, overwrite=args.overwrite,
                           progress=_ProgressLine())
    labelled = f"{len(summary.classes)} classes" if summary.classes else "unlabelled"
    print(f"wrote {summary.samples} images ({labelled}) in {len(summary.shards)} shards; in a recipe:\n"
          f"  data.dataset=\"{{name: shards, path: '{summary.pattern}'}}\"", file=sys.stderr)
    print(json.dumps({"pattern": summary.pattern, "shards": len(summary.shards), "samples": summary.samples,
                      "classes": summary.classes}))
    return 0


def run_index(args: argparse.Namespace) -> int:
    from sslkit.data.shard_index import index_shards
    from sslkit.data.shard_patterns import expand_shards

    shards = expand_shards(args.pattern)
    entries = index_shards(shards)
    samples = sum(e.samples for e in entries.values())
    print(f"indexed {samples} samples in {len(shards)} shards", file=sys.stderr)
    print(json.dumps({"shards": len(shards), "samples": samples}))
    return 0
