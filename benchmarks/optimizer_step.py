"""AdamW implementations on the benchmark model's parameters: one ``optimizer.step()`` alone.

Builds the student of ``recipes/cifar10/bench_vit_tiny.yaml`` once (its parameter groups as
sslkit makes them), gives every trainable parameter a random gradient, and times
``optimizer.step()`` of each ``optim.implementation`` (``foreach``, ``fused``, ``for_loop``: one
parameter at a time) in turns, ``--rounds`` rounds, median per implementation.

Run::

    .venv/bin/python benchmarks/optimizer_step.py --threads 2 --rounds 20
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

import torch
from bench_hardware import describe

from sslkit.engine.optimizer import build_optimizer

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_RECIPE = ROOT / "recipes" / "cifar10" / "bench_vit_tiny.yaml"
DEFAULT_TAR = ROOT.parent / "shared" / "data" / "cifar10" / "train.tar"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--recipe", default=str(DEFAULT_RECIPE))
    parser.add_argument("--data", default=str(DEFAULT_TAR))
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=20)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    from sslkit.engine.trainer import Trainer
    from sslkit.recipe import load_recipe

    print(describe(args.threads) + f", OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY', 'unset')}")
    resolved = load_recipe(args.recipe, [f"data.dataset.path={args.data}", "run.precision=fp32"])
    with tempfile.TemporaryDirectory() as out:
        trainer = Trainer(resolved, Path(out))
    groups, r = trainer.groups, trainer.recipe
    params = [p for g in groups for p in g.params]
    print(f"{len(params)} parameter tensors, {sum(p.numel() for p in params) / 1e6:.1f} M values, "
          f"{len(groups)} groups")
    optimizers = {name: build_optimizer(groups, r.optim.betas, r.optim.eps, name, torch.device("cpu"))
                  for name in ("foreach", "fused", "for_loop")}
    for optimizer in optimizers.values():
        for group in optimizer.param_groups:
            group["lr"], group["weight_decay"] = 1e-4, 0.04
    torch.manual_seed(0)
    for p in params:
        p.grad = torch.randn_like(p) * 1e-3
    for optimizer in optimizers.values():
        optimizer.step()  # state allocation
    times: dict[str, list[float]] = {name: [] for name in optimizers}
    for i in range(args.rounds):
        for name, optimizer in list(optimizers.items())[:: 1 if i % 2 == 0 else -1]:
            start = time.perf_counter()
            optimizer.step()
            times[name].append(time.perf_counter() - start)
    for name, values in times.items():
        print(f"  {name:<8} {1e3 * statistics.median(values):8.1f} ms per step (median of {len(values)})")
    print(describe(args.threads))


if __name__ == "__main__":
    main()
