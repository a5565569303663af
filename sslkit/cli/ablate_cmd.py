"""``sslkit ablate ABLATION.yaml [KEY=VALUE ...] [--output-dir DIR]``: train and compare variants."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from sslkit.ablation import AblationRunner, load_ablation

#: Exit status when a preemption signal stopped the ablation (sysexits.h EX_TEMPFAIL: try again).
EXIT_PREEMPTED = 75

DESCRIPTION = """\
Train every variant x seed of an ablation file one after the other into DIR/<variant>/seed_<s>/,
then write DIR/summary.md and DIR/summary.csv (one row per variant: what it overrides, final
losses, kNN / linear accuracy as mean ± std over seeds, images/s, wall time), loss and
accuracy plots (DIR/*.png) and TensorBoard runs (tensorboard --logdir DIR).

Re-running the same command skips finished runs and resumes an interrupted one. SIGTERM or
SIGUSR1 stops the current run with a checkpoint and the ablation with it: exit status 75
(EX_TEMPFAIL: re-run the same command to continue).
KEY=VALUE overrides apply to every variant (e.g. train.max_steps=50 for a quick pass);
use a new --output-dir when you change them, since finished runs must match their recipe.
Relative paths inside recipes (datasets) are relative to the current directory.

example:
  sslkit ablate recipes/ablations/masker_block_vs_bernoulli.yaml --output-dir runs/ablations/masker
"""


def add_parser(sub: Any) -> None:
    p = sub.add_parser(
        "ablate",
        help="run an ablation (variants x seeds) and write the comparison",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("ablation", type=Path, help="ablation YAML file (see docs/ablations.md)")
    p.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="recipe overrides for every variant")
    p.add_argument(
        "--output-dir",
        "-o",
        type=Path,
        help="where the runs and the summary go (default: runs/ablations/<ablation file name>)",
    )
    p.add_argument(
        "--linear",
        action="store_true",
        help="also run the linear probe after each run (as eval.linear: true in the ablation file)",
    )
    p.add_argument(
        "--dry-run",
        action="store_true",
        help="validate every variant's recipe and list the runs and their status, train nothing",
    )
    p.add_argument(
        "--summary-only",
        action="store_true",
        help="rebuild the summary, plots and TensorBoard means from the finished runs so far, train nothing",
    )
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    ablation = load_ablation(args.ablation, args.overrides)
    if args.linear:
        ablation.spec.eval.linear = True
    output_dir = args.output_dir or Path("runs") / "ablations" / ablation.name
    runner = AblationRunner(ablation, output_dir)
    if args.dry_run:
        print(
            f"{args.ablation}: {len(ablation.variants)} variant(s) x {len(ablation.seeds)} seed(s), every recipe valid"
        )
        for variant in ablation.variants:
            print(f"  {variant.name}: {variant.describe()}")
        for line in runner.describe_plan():
            print(f"  {line}")
        return 0
    if args.summary_only:
        files = runner.write_summary()
    else:
        outcome = runner.run()
        files = outcome.files
        if not outcome.completed:
            print(f"sslkit ablate: stopped by {outcome.stop_signal}; re-run the same command to continue"
                  + (f" (summary so far: {output_dir / 'summary.md'})" if files else ""), file=sys.stderr)
            return EXIT_PREEMPTED
    print((output_dir / "summary.md").read_text(encoding="utf-8"), end="")
    print("wrote: " + ", ".join(str(f) for f in files))
    if not args.summary_only and outcome.diverged:
        for label, error in outcome.diverged.items():
            print(f"sslkit ablate: {label} diverged: {error}", file=sys.stderr)
        return 1
    return 0
