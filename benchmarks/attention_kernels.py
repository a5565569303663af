"""Attention kernels on the CPU: PyTorch's fused SDPA against the explicit ``softmax(q k^T / sqrt(d)) v``.

For each shape ``[batch, heads, tokens, head_dim]`` and precision (fp32, bf16 autocast) it times
forward + backward (the student) and forward without gradients (the teacher) of both kernels,
interleaved in the same process (``--rounds`` alternations, median per variant), and prints the
ratio SDPA / explicit (> 1: the explicit kernel is faster). The default shapes are those of
``recipes/cifar10/bench_vit_tiny.yaml`` (ViT-tiny, 3 heads of 64, patch 4): 2 x 64 global crops of
65 tokens and 8 x 64 local crops of 17 tokens, plus a long sequence for contrast.

Run::

    .venv/bin/python benchmarks/attention_kernels.py --threads 2
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F
from bench_hardware import describe

from sslkit_plugins.backbones.vit_blocks import _explicit_attention

KERNELS: dict[str, Callable[..., torch.Tensor]] = {
    "sdpa": F.scaled_dot_product_attention,
    "explicit": _explicit_attention,
}
DEFAULT_SHAPES = ["128x3x65x64", "512x3x17x64", "64x3x257x64"]


def _call(kernel: Callable[..., torch.Tensor], q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, grad: bool,
          bf16: bool) -> None:
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        if grad:
            out = kernel(q, k, v)
            out.float().sum().backward()
        else:
            with torch.no_grad():
                kernel(q, k, v)


def measure(shape: tuple[int, int, int, int], bf16: bool, grad: bool, rounds: int) -> dict[str, float]:
    """Median seconds per call of each kernel, alternating them ``rounds`` times after one warm-up call."""
    torch.manual_seed(0)
    q, k, v = (torch.randn(shape, requires_grad=grad) for _ in range(3))
    times: dict[str, list[float]] = {name: [] for name in KERNELS}
    for kernel in KERNELS.values():
        _call(kernel, q, k, v, grad, bf16)
    for r in range(rounds):
        order = list(KERNELS.items()) if r % 2 == 0 else list(KERNELS.items())[::-1]
        for name, kernel in order:
            start = time.perf_counter()
            _call(kernel, q, k, v, grad, bf16)
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(values) for name, values in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--shapes", nargs="+", default=DEFAULT_SHAPES, help="BxHxNxD (default: the bench config)")
    parser.add_argument("--precision", nargs="+", default=["fp32", "bf16"], choices=("fp32", "bf16"))
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=10, help="alternations per measurement (default 10)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(describe(args.threads) + f", OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY', 'unset')}")
    print(f"{'shape':<14}{'precision':<10}{'pass':<10}{'sdpa ms':>10}{'explicit ms':>13}{'sdpa/explicit':>15}")
    for text in args.shapes:
        shape = tuple(int(x) for x in text.split("x"))
        assert len(shape) == 4, f"shape {text!r} is not BxHxNxD"
        for precision in args.precision:
            for grad in (True, False):
                t = measure(shape, precision == "bf16", grad, args.rounds)  # type: ignore[arg-type]
                print(f"{text:<14}{precision:<10}{'fwd+bwd' if grad else 'fwd':<10}{1e3 * t['sdpa']:>10.2f}"
                      f"{1e3 * t['explicit']:>13.2f}{t['sdpa'] / t['explicit']:>15.2f}", flush=True)
    print(f"load average at the end {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
