"""Compute-only A/B of sslkit training-step variants, interleaved in one process.

Each ``--variant NAME=KEY=VALUE,...`` builds its own :class:`sslkit.engine.trainer.Trainer` from
the recipe with those overrides (the base contender ``base`` has none). One batch is loaded once
and every step of every variant trains on it (augmentation, masking, teacher and student passes,
losses, backward, clipping, AdamW, EMA: ``Trainer.train_step`` as it is; no loader), so that what
differs is the step's arithmetic only. After ``--warmup`` untimed steps per variant, the variants
take turns for ``--rounds`` rounds (the order reversed every other round) and the median seconds
per step of each is printed with its ratio to ``base``: the interleaving makes slow drifts of the
machine's load hit every variant alike. ``--profile NAME`` adds a torch.profiler table of one step
of that variant (sorted by self CPU time).

Run (the recipe of ``train_throughput.py``, fp32, attention kernels)::

    .venv/bin/python benchmarks/step_ab.py --set run.precision=fp32 \
        --variant explicit=model.backbone.attention=explicit --rounds 6
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
from bench_hardware import describe
from bench_meter import profile_step

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_RECIPE = ROOT / "recipes" / "cifar10" / "bench_vit_tiny.yaml"
DEFAULT_TAR = ROOT.parent / "shared" / "data" / "cifar10" / "train.tar"


def build_trainers(recipe: str, base: list[str], variants: dict[str, list[str]], out: Path) -> dict[str, Any]:
    """One trainer per variant (same seed, so the same initial weights), each in its own output folder."""
    from sslkit.engine.trainer import Trainer
    from sslkit.recipe import load_recipe

    trainers = {}
    for name, overrides in variants.items():
        trainers[name] = Trainer(load_recipe(recipe, base + overrides), out / name)
    return trainers


def first_batch(trainer: Any) -> Any:
    """The first batch of the trainer's own train loader (no workers)."""
    from sslkit.data.loader import build_train_loader

    r = trainer.recipe
    loader = build_train_loader(trainer.parts.dataset, trainer.parts.augmentation,
                                global_batch_size=trainer.global_batch, rank=0, world_size=1, seed=r.run.seed,
                                start_step=0, num_workers=0, device=trainer.info.device,
                                max_bad_fraction=r.data.max_bad_fraction)
    return next(iter(loader))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--recipe", default=str(DEFAULT_RECIPE))
    parser.add_argument("--data", default=str(DEFAULT_TAR))
    parser.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="overrides for every variant")
    parser.add_argument("--variant", nargs="*", default=[], metavar="NAME=KEY=VALUE,...")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--warmup", type=int, default=1, help="untimed steps per variant (default 1)")
    parser.add_argument("--rounds", type=int, default=5, help="timed steps per variant, interleaved (default 5)")
    parser.add_argument("--profile", metavar="NAME", help="profile one step of this variant")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    variants = {"base": []}
    for text in args.variant:
        name, _, overrides = text.partition("=")
        variants[name] = [o for o in overrides.split(",") if o]
    base = [f"data.dataset.path={args.data}", "data.num_workers=0", f"run.num_threads={args.threads}", *args.set]
    print(describe(args.threads) + f", OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY', 'unset')}")
    print(f"recipe {args.recipe} {' '.join(args.set)}; variants {variants}", flush=True)
    with tempfile.TemporaryDirectory(prefix="sslkit-step-ab-") as out:
        build_start = time.perf_counter()
        trainers = build_trainers(args.recipe, base, variants, Path(out))
        batch = first_batch(next(iter(trainers.values())))
        print(f"built in {time.perf_counter() - build_start:.1f} s", flush=True)
        for name, trainer in trainers.items():
            start = time.perf_counter()
            for i in range(args.warmup):
                trainer.train_step(i, batch)
            print(f"  warm-up {name}: {(time.perf_counter() - start) / max(args.warmup, 1):.2f} s/step", flush=True)
        step = args.warmup
        times: dict[str, list[float]] = {name: [] for name in trainers}
        for r in range(args.rounds):
            order = list(trainers.items()) if r % 2 == 0 else list(trainers.items())[::-1]
            for name, trainer in order:
                start = time.perf_counter()
                terms = trainer.train_step(step, batch)
                if terms is not None:
                    float(terms["total"])
                times[name].append(time.perf_counter() - start)
            step += 1
            print(f"  round {r}: " + ", ".join(f"{n} {t[-1]:.2f}" for n, t in times.items())
                  + f" s (load {os.getloadavg()[0]:.2f})", flush=True)
        base_median = statistics.median(times["base"])
        print(f"{'variant':<16}{'median s/step':>15}{'img/s':>9}{'x base speed':>14}  steps (s)")
        images = next(iter(trainers.values())).global_batch
        for name, values in times.items():
            median = statistics.median(values)
            print(f"{name:<16}{median:>15.3f}{images / median:>9.2f}{base_median / median:>14.3f}  "
                  f"{[round(v, 2) for v in values]}")
        if args.profile:
            trainer = trainers[args.profile]
            print(f"\nprofile of one step of {args.profile}:")
            print(profile_step(lambda: trainer.train_step(step, batch), row_limit=25))
    print(describe(args.threads))


if __name__ == "__main__":
    main()
