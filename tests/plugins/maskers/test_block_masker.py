"""Tests of the ``block`` masker: stratified targets, count bounds, rectangle shapes, spatial
coherence, agreement with a plain per-crop implementation of the official algorithm, determinism."""

from __future__ import annotations

import math
import random

import pytest
import torch
from torch import Tensor

from sslkit.components import BuildContext
from sslkit.errors import SSLKitError
from sslkit_plugins.maskers.bernoulli import BernoulliMasker, BernoulliMaskerParams
from sslkit_plugins.maskers.block import BlockMasker, BlockMaskerParams, rectangle_shapes


def plain_block_mask(target: int, height: int, width: int, rng: random.Random) -> Tensor:
    """The official algorithm written out per crop and per patch (BEiT, Bao et al. 2022, algorithm 1)."""
    mask = [[False] * width for _ in range(height)]
    count = 0
    while count < target:
        budget = min(target - count, 0.5 * height * width)
        added = 0
        for _ in range(10):
            area = rng.uniform(4, budget)
            aspect = math.exp(rng.uniform(math.log(0.3), math.log(1 / 0.3)))
            h, w = round(math.sqrt(area * aspect)), round(math.sqrt(area / aspect))
            if h < height and w < width:
                top, left = rng.randint(0, height - h), rng.randint(0, width - w)
                cells = [(i, j) for i in range(top, top + h) for j in range(left, left + w)]
                new = sum(not mask[i][j] for i, j in cells)
                if 0 < new <= budget:
                    for i, j in cells:
                        mask[i][j] = True
                    added = new
                    break
        if added == 0:
            break
        count += added
    return torch.tensor(mask).view(-1)


def boundary_pairs(masks: Tensor, grid: tuple[int, int]) -> Tensor:
    """Number of 4-neighbour pairs with one masked and one visible patch, per mask."""
    m = masks.view(-1, *grid)
    vertical = (m[:, 1:, :] != m[:, :-1, :]).sum((1, 2))
    horizontal = (m[:, :, 1:] != m[:, :, :-1]).sum((1, 2))
    return vertical + horizontal


def copy_of(generator: torch.Generator) -> torch.Generator:
    clone = torch.Generator()
    clone.set_state(generator.get_state())
    return clone


def test_stratified_ratios_one_per_stratum_and_realised_counts_within_target() -> None:
    masker = BlockMasker(BlockMaskerParams(), BuildContext())
    grid, n_patches, n = (14, 14), 196, 40
    edges = torch.linspace(0.1, 0.5, n + 1, dtype=torch.float64)
    generator = torch.Generator().manual_seed(1)
    ratios, counts = [], []
    for _ in range(50):  # 2000 crops
        r = masker.ratios(n, copy_of(generator))  # generate() draws the same ratios first
        masks = masker.generate(n, grid, generator)
        assert masks.shape == (n, n_patches) and masks.dtype == torch.bool
        # exactly one ratio per stratum [r_i, r_(i+1)], in shuffled order
        assert torch.all(r.sort().values >= edges[:-1]) and torch.all(r.sort().values <= edges[1:])
        ratios.append(r)
        counts.append(masks.sum(1))
    ratio, count = torch.cat(ratios), torch.cat(counts)
    target = (ratio * n_patches).long()
    assert torch.all(count <= target)  # never above the crop's target
    assert torch.all(count <= int(0.5 * n_patches))
    assert (target - count).double().mean() < 0.5  # the target is almost always reached
    stratum = torch.bucketize(ratio, edges) - 1
    realised = count.double() / n_patches
    for i in range(n):
        mean = realised[stratum == i].mean()
        assert edges[i] - 1 / n_patches <= mean <= edges[i + 1], (i, mean)


def test_fixed_ratio_targets_int_ratio_times_patches() -> None:
    masker = BlockMasker(BlockMaskerParams(stratified=False, ratio=0.3), BuildContext())
    counts = masker.generate(2000, (16, 16), torch.Generator().manual_seed(2)).sum(1)
    target = int(0.3 * 256)
    assert counts.max() == target
    assert counts.min() >= target - 4
    assert counts.double().mean() > target - 0.5


def test_max_fraction_caps_each_rectangle() -> None:
    # Same target, rectangles capped at 20 patches instead of 200: more, smaller rectangles,
    # hence a longer masked/visible boundary.
    grid = (20, 20)
    boundaries = []
    for max_fraction in (0.05, 0.5):
        params = BlockMaskerParams(stratified=False, ratio=0.3, max_fraction=max_fraction)
        masks = BlockMasker(params, BuildContext()).generate(300, grid, torch.Generator().manual_seed(3))
        assert torch.all(masks.sum(1) <= 120) and masks.sum(1).double().mean() > 119
        boundaries.append(boundary_pairs(masks, grid).double().mean())
    assert boundaries[0] > 1.3 * boundaries[1]


def test_ratios_are_shuffled_and_positions_symmetric() -> None:
    masker = BlockMasker(BlockMaskerParams(), BuildContext())
    generator = torch.Generator().manual_seed(10)
    first_crop_ratio = torch.stack([masker.ratios(8, generator)[0] for _ in range(400)])
    assert abs(float(first_crop_ratio.mean()) - 0.3) < 0.03  # not always the lowest stratum
    masks = masker.generate(6000, (12, 12), generator).view(-1, 12, 12).double()
    rows, cols = masks.mean((0, 2)), masks.mean((0, 1))
    # placements are uniform over valid positions: the frequency profile is mirror-symmetric
    assert torch.allclose(rows, rows.flip(0), atol=0.015)
    assert torch.allclose(cols, cols.flip(0), atol=0.015)
    assert rows[0] < 0.5 * rows[6] and cols[0] < 0.5 * cols[6]  # edges are covered by fewer rectangles


def test_rectangle_shapes_follow_the_formula() -> None:
    generator = torch.Generator().manual_seed(4)
    budget = torch.tensor([4.0, 10.0, 60.0, 500.0]).repeat_interleave(500)
    area_u = torch.rand(budget.shape[0], 10, generator=generator)
    aspect_u = torch.rand(budget.shape[0], 10, generator=generator)
    heights, widths = rectangle_shapes(budget, area_u, aspect_u, 4, 0.3)
    expected_h = torch.empty_like(heights)
    expected_w = torch.empty_like(widths)
    for idx in range(budget.shape[0]):
        for k in range(10):
            area = 4 + (float(budget[idx]) - 4) * float(area_u[idx, k])
            aspect = math.exp(math.log(0.3) + (math.log(1 / 0.3) - math.log(0.3)) * float(aspect_u[idx, k]))
            expected_h[idx, k] = round(math.sqrt(area * aspect))
            expected_w[idx, k] = round(math.sqrt(area / aspect))
    # float32 vs float64 may differ exactly at .5 rounding boundaries: allow a tiny fraction
    assert (heights != expected_h).double().mean() < 1e-3
    assert (widths != expected_w).double().mean() < 1e-3
    large = heights * widths >= 40
    ratio = heights[large] / widths[large]
    assert ratio.min() >= 0.3 * 0.85 and ratio.max() <= (1 / 0.3) / 0.85  # within rounding of [0.3, 3.33]
    assert ratio.min() < 0.4 and ratio.max() > 2.5  # both extremes are reached
    # log-uniform aspect: log(h/w) has median ~0 and quartiles ~ +-log(1/0.3)/2
    log_ratio = ratio.log()
    assert abs(float(log_ratio.median())) < 0.1
    assert abs(float(log_ratio.quantile(0.75)) - math.log(1 / 0.3) / 2) < 0.12
    # all shapes, small ones included, stay within the rounding limits 1x5 .. 5x1
    all_ratio = heights / widths
    assert all_ratio.min() >= 0.2 and all_ratio.max() <= 5.0


def test_rectangles_are_strictly_smaller_than_the_grid() -> None:
    # Target 4 on a 3 x 40 grid: the possible first rectangles are 1x3, 1x4, 2x2 and 3x1;
    # 3x1 spans the full height and is rejected (h < H), and nothing else can fill a column.
    params = BlockMaskerParams(stratified=False, ratio=0.034)
    masker = BlockMasker(params, BuildContext())
    masks = masker.generate(2000, (3, 40), torch.Generator().manual_seed(11)).view(-1, 3, 40)
    assert torch.all(masks.sum((1, 2)) <= 4)
    assert not masks.all(1).any()


def test_same_distribution_as_the_plain_algorithm() -> None:
    grid, n = (14, 14), 600
    ours = BlockMasker(BlockMaskerParams(stratified=False, ratio=0.3), BuildContext()).generate(
        n, grid, torch.Generator().manual_seed(5)
    )
    rng = random.Random(5)
    plain = torch.stack([plain_block_mask(int(0.3 * 196), *grid, rng) for _ in range(n)])
    for statistic in (lambda m: m.sum(1), lambda m: boundary_pairs(m, grid)):
        a, b = statistic(ours).double(), statistic(plain).double()
        standard_error = math.sqrt(a.var() / n + b.var() / n)
        assert abs(a.mean() - b.mean()) < 4 * standard_error + 1e-9, (a.mean(), b.mean())
    # the boundary length depends on the rectangle shapes: compare its spread too
    a, b = boundary_pairs(ours, grid).double(), boundary_pairs(plain, grid).double()
    assert 0.8 < a.std() / b.std() < 1.25


def test_block_masks_are_spatially_coherent() -> None:
    grid = (16, 16)
    block = BlockMasker(BlockMaskerParams(stratified=False, ratio=0.3), BuildContext()).generate(
        500, grid, torch.Generator().manual_seed(6)
    )
    bernoulli = BernoulliMasker(BernoulliMaskerParams(ratio=0.3), BuildContext()).generate(
        500, grid, torch.Generator().manual_seed(6)
    )
    assert abs(block.double().mean() - bernoulli.double().mean()) < 0.01
    assert boundary_pairs(block, grid).double().mean() < 0.4 * boundary_pairs(bernoulli, grid).double().mean()


def test_determinism_under_the_same_seed() -> None:
    masker = BlockMasker(BlockMaskerParams(), BuildContext())
    a = masker.generate(64, (16, 16), torch.Generator().manual_seed(7))
    b = masker.generate(64, (16, 16), torch.Generator().manual_seed(7))
    c = masker.generate(64, (16, 16), torch.Generator().manual_seed(8))
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


def test_edge_cases() -> None:
    generator = torch.Generator().manual_seed(9)
    masker = BlockMasker(BlockMaskerParams(), BuildContext())
    assert masker.generate(0, (14, 14), generator).shape == (0, 196)
    rectangular = masker.generate(50, (8, 20), generator)
    assert rectangular.shape == (50, 160)
    assert torch.all(rectangular.sum(1) <= int(0.5 * 160))
    empty = BlockMasker(BlockMaskerParams(stratified=False, ratio=0.0), BuildContext()).generate(5, (14, 14), generator)
    assert not empty.any()
    with pytest.raises(SSLKitError):
        BlockMasker(BlockMaskerParams(min_ratio=0.6, max_ratio=0.5), BuildContext())
