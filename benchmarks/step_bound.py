"""How fast a training step could be on this machine at all: its FLOPs over the machine's peak GEMM rate.

Counts the floating-point operations of one whole training step of sslkit and of the lightly peer
(``torch.utils.flop_counter.FlopCounterMode``: every matrix product, the patch convolution, and the
CPU flash-attention kernel, forward and backward, which the counter does not know and this script
registers with PyTorch's own SDPA formulas), measures the machine's peak fp32 GEMM rate (the best
of a large square product and the model's own linear-layer shapes, same threads), and times both
steps compute-only (one fixed batch each, interleaved, median). It prints:

* the lower bound on a step's time: counted FLOPs / peak rate (every FLOP at the peak, nothing
  else costing anything);
* each contender's efficiency: that bound over its measured time;
* what a target speed-up over the peer (``--target``, default 1.3) asks of sslkit: the step time it
  needs and the share of the peak GEMM rate the whole step would have to sustain.

The two counts show whether both loops do the same arithmetic; the bound shows how much any
implementation of that arithmetic can gain on this CPU.

    .venv/bin/python benchmarks/step_bound.py --set run.precision=fp32
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch
from bench_hardware import cpu_isa_env, describe
from lightly_peer import PeerLoop, config_from_recipe
from step_ab import DEFAULT_RECIPE, DEFAULT_TAR, build_trainers, first_batch
from torch.utils.flop_counter import FlopCounterMode, register_flop_formula, sdpa_backward_flop_count, sdpa_flop_count

_CPU_SDPA = torch.ops.aten._scaled_dot_product_flash_attention_for_cpu
_CPU_SDPA_BACKWARD = torch.ops.aten._scaled_dot_product_flash_attention_for_cpu_backward


@register_flop_formula(_CPU_SDPA, get_raw=True)
def _cpu_sdpa_flops(query: Any, key: Any, value: Any, *args: Any, **kwargs: Any) -> int:
    return int(sdpa_flop_count(query.shape, key.shape, value.shape))


@register_flop_formula(_CPU_SDPA_BACKWARD, get_raw=True)
def _cpu_sdpa_backward_flops(grad_out: Any, query: Any, key: Any, value: Any, *args: Any, **kwargs: Any) -> int:
    return int(sdpa_backward_flop_count(grad_out.shape, query.shape, key.shape, value.shape))


def gemm_peak(threads: int, shapes: list[tuple[int, int, int]], repeats: int = 8) -> tuple[float, dict[str, float]]:
    """Best fp32 GFLOP/s over ``shapes`` (``m x k @ k x n``), each timed as the median of ``repeats``."""
    torch.set_num_threads(threads)
    rates: dict[str, float] = {}
    for m, k, n in shapes:
        a, b = torch.randn(m, k), torch.randn(k, n)
        a @ b
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            a @ b
            times.append(time.perf_counter() - start)
        rates[f"{m}x{k}x{n}"] = 2 * m * k * n / statistics.median(times) / 1e9
    return max(rates.values()), rates


def count_flops(run_step: Any) -> tuple[float, dict[str, float]]:
    """GFLOP of one call of ``run_step``, total and per operator."""
    with FlopCounterMode(display=False) as counter:
        run_step()
    per_op = {str(op): flops / 1e9 for op, flops in counter.get_flop_counts().get("Global", {}).items() if flops}
    return counter.get_total_flops() / 1e9, per_op


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--recipe", default=str(DEFAULT_RECIPE))
    parser.add_argument("--data", default=str(DEFAULT_TAR))
    parser.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="recipe overrides (both loops)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=4, help="timed steps per contender, interleaved (default 4)")
    parser.add_argument("--target", type=float, default=1.3, help="speed-up over the peer to size (default 1.3)")
    parser.add_argument("--cpu-isa", choices=("native", "avx2"), default="native",
                        help="restrict PyTorch / MKL / oneDNN kernels to this instruction set (avx2: see "
                        "train_throughput.py); must be set before torch loads, so the script re-executes itself")
    args = parser.parse_args()
    isa_env = cpu_isa_env(args.cpu_isa)
    if any(os.environ.get(k) != v for k, v in isa_env.items()):
        os.execve(sys.executable, [sys.executable, *sys.argv], {**os.environ, **isa_env})
    torch.set_num_threads(args.threads)
    print(describe(args.threads) + f", OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY', 'unset')}", flush=True)

    base = [f"data.dataset.path={args.data}", "data.num_workers=0", f"run.num_threads={args.threads}", *args.set]
    with tempfile.TemporaryDirectory(prefix="sslkit-step-bound-") as out:
        trainer = build_trainers(args.recipe, base, {"sslkit": []}, Path(out))["sslkit"]
        batch = first_batch(trainer)
        resolved = trainer.resolved
        precision = trainer.precision.resolved
        peer = PeerLoop(replace(config_from_recipe(resolved, args.data, precision), num_workers=0),
                        torch.device("cpu"))
        peer_batch = next(peer.loader())
        steps = {"sslkit": lambda i: trainer.train_step(i, batch), "lightly peer": lambda i: peer.step(i, peer_batch)}
        for run in steps.values():
            run(0)  # warm-up
        flops = {name: count_flops(lambda run=run: run(1)) for name, run in steps.items()}
        times: dict[str, list[float]] = {name: [] for name in steps}
        for r in range(args.rounds):
            order = list(steps.items()) if r % 2 == 0 else list(steps.items())[::-1]
            for name, run in order:
                start = time.perf_counter()
                run(2 + r)
                times[name].append(time.perf_counter() - start)
            print(f"  round {r}: " + ", ".join(f"{n} {t[-1]:.2f} s" for n, t in times.items())
                  + f" (load {os.getloadavg()[0]:.2f})", flush=True)

    d = trainer.student.backbone.embed_dim  # the linear layers' shapes at about one batch of global-crop tokens
    shapes = [(4096, 4096, 4096), (8192, d, 3 * d), (8192, d, 4 * d), (8192, 4 * d, d), (d, 8192, 3 * d)]
    peak, rates = gemm_peak(args.threads, shapes)
    print(f"\npeak fp32 GEMM rate, {args.threads} threads: {peak:.1f} GFLOP/s "
          f"({', '.join(f'{k} {v:.0f}' for k, v in rates.items())})")
    print(f"{'contender':<16}{'GFLOP/step':>12}{'bound s':>9}{'median s':>10}{'GFLOP/s':>9}{'of peak':>9}"
          "  per op (GFLOP)")
    for name in steps:
        total, per_op = flops[name]
        median = statistics.median(times[name])
        print(f"{name:<16}{total:>12.1f}{total / peak:>9.2f}{median:>10.2f}{total / median:>9.1f}"
              f"{total / median / peak:>9.0%}  " + ", ".join(f"{k.split('.')[1]} {v:.1f}" for k, v in per_op.items()))
    peer_time = statistics.median(times["lightly peer"])
    needed = peer_time / args.target
    print(f"\n{args.target}x the peer's compute step = {needed:.2f} s for sslkit's {flops['sslkit'][0]:.0f} GFLOP: "
          f"{flops['sslkit'][0] / needed:.1f} GFLOP/s, {flops['sslkit'][0] / needed / peak:.0%} of the peak GEMM rate "
          f"sustained over the whole step (now {flops['sslkit'][0] / statistics.median(times['sslkit']) / peak:.0%})")
    print(describe(args.threads))


if __name__ == "__main__":
    main()
