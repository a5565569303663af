"""Speed of the vectorised ``block`` masker against a straightforward per-crop loop.

Both implement the same algorithm (BEiT, Bao et al. 2022, algorithm 1, with DINOv2's stratified ratios in [0.1, 0.5],
rectangles of area U[4, budget] and log-uniform aspect in [0.3, 1/0.3], 10 attempts); the
loop version below is written for clarity, one crop and one patch at a time, in the style of
the official code. The realised mean mask ratio and the mean masked/visible boundary length
of both are printed to show that they do the same work.

Run: ``.venv/bin/python benchmarks/block_masker.py [--repeats N] [--threads T]`` (CPU).
"""

from __future__ import annotations

import argparse
import math
import random
import statistics
import time
from collections.abc import Callable

import numpy as np
import torch

from sslkit.components import BuildContext
from sslkit_plugins.maskers.block import BlockMasker, BlockMaskerParams


def loop_rectangle(
    mask: np.ndarray,
    budget: float,
    rng: random.Random,
    min_num_patches: int = 4,
    min_aspect: float = 0.3,
    max_attempts: int = 10,
) -> int:
    """Try up to ``max_attempts`` rectangles on ``mask`` (in place); return the patches added."""
    height, width = mask.shape
    log_lo, log_hi = math.log(min_aspect), math.log(1 / min_aspect)
    for _ in range(max_attempts):
        area = rng.uniform(min_num_patches, budget)
        aspect = math.exp(rng.uniform(log_lo, log_hi))
        h = round(math.sqrt(area * aspect))
        w = round(math.sqrt(area / aspect))
        if h < height and w < width:
            top = rng.randint(0, height - h)
            left = rng.randint(0, width - w)
            new = h * w - int(mask[top : top + h, left : left + w].sum())
            if 0 < new <= budget:
                for i in range(top, top + h):
                    for j in range(left, left + w):
                        mask[i, j] = True
                return new
    return 0


def loop_block_mask(target: int, grid: tuple[int, int], rng: random.Random, max_fraction: float = 0.5) -> np.ndarray:
    """One crop's block mask with at most ``target`` patches (official algorithm, per crop)."""
    mask = np.zeros(grid, dtype=bool)
    count = 0
    max_per_rectangle = max_fraction * grid[0] * grid[1]
    while count < target:
        added = loop_rectangle(mask, min(target - count, max_per_rectangle), rng)
        if added == 0:
            break
        count += added
    return mask


def loop_block_masks(
    n: int, grid: tuple[int, int], rng: random.Random, min_ratio: float = 0.1, max_ratio: float = 0.5
) -> np.ndarray:
    """``n`` crops with stratified ratios, shuffled: ``[n, h * w]``."""
    n_patches = grid[0] * grid[1]
    edges = np.linspace(min_ratio, max_ratio, n + 1)
    masks = [
        loop_block_mask(int(n_patches * rng.uniform(edges[i], edges[i + 1])), grid, rng).reshape(-1) for i in range(n)
    ]
    rng.shuffle(masks)
    return np.stack(masks)


def boundary(masks: np.ndarray, grid: tuple[int, int]) -> float:
    """Mean number of 4-neighbour (masked, visible) pairs per crop: a shape statistic."""
    m = masks.reshape(-1, *grid)
    return float((m[:, 1:] != m[:, :-1]).sum((1, 2)).mean() + (m[:, :, 1:] != m[:, :, :-1]).sum((1, 2)).mean())


def run_times(fn: Callable[[], object], repeats: int) -> list[float]:
    """Wall-clock seconds of ``repeats`` calls after one warm-up call."""
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads (the loop uses one)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    masker = BlockMasker(BlockMaskerParams(), BuildContext())
    generator = torch.Generator().manual_seed(0)
    rng = random.Random(0)
    print(f"torch {torch.__version__}, {args.threads} thread(s), {args.repeats} runs after a warm-up")
    print(
        f"{'case':>16} {'impl':>10} {'median ms':>10} {'min ms':>8} {'masks/s':>9} {'mean ratio':>11} {'boundary':>9}"
    )
    for n, grid in ((256, (16, 16)), (512, (37, 37))):
        medians = {}
        for name, fn in (
            ("vectorised", lambda n=n, grid=grid: masker.generate(n, grid, generator).numpy()),
            ("loop", lambda n=n, grid=grid: loop_block_masks(n, grid, rng)),
        ):
            times = run_times(fn, args.repeats)
            medians[name] = statistics.median(times)
            samples = [fn() for _ in range(8)]
            ratio = float(np.mean([m.mean() for m in samples]))
            edges = float(np.mean([boundary(m, grid) for m in samples]))
            case = f"{n} x {grid[0]}x{grid[1]}"
            print(
                f"{case:>16} {name:>10} {medians[name] * 1e3:10.2f} {min(times) * 1e3:8.2f} "
                f"{n / medians[name]:9.0f} {ratio:11.4f} {edges:9.1f}"
            )
        print(f"{'':>16} speed-up (median) {medians['loop'] / medians['vectorised']:.1f}x")


if __name__ == "__main__":
    main()
