"""Tests of the ``bernoulli`` masker: i.i.d. tokens at the given ratio, determinism."""

from __future__ import annotations

import math

import torch

from sslkit.components import BuildContext
from sslkit_plugins.maskers.bernoulli import BernoulliMasker, BernoulliMaskerParams


def test_ratio_within_binomial_tolerance_and_independent_tokens() -> None:
    ratio, n, grid = 0.3, 2000, (14, 14)
    masker = BernoulliMasker(BernoulliMaskerParams(ratio=ratio), BuildContext())
    masks = masker.generate(n, grid, torch.Generator().manual_seed(0))
    assert masks.shape == (n, 196) and masks.dtype == torch.bool
    total = n * 196
    assert abs(masks.double().mean() - ratio) < 4 * math.sqrt(ratio * (1 - ratio) / total)
    # per-crop counts are Binomial(196, 0.3): variance 196 * 0.3 * 0.7 = 41.2
    assert 35 < masks.sum(1).double().var() < 48
    # independence: P(both neighbours masked) = ratio^2
    both = (masks.view(n, 14, 14)[:, :, 1:] & masks.view(n, 14, 14)[:, :, :-1]).double().mean()
    assert abs(both - ratio**2) < 0.005
    # every position equally likely
    assert (masks.double().mean(0) - ratio).abs().max() < 0.05


def test_extremes_and_determinism() -> None:
    generator = torch.Generator().manual_seed(1)
    assert not BernoulliMasker(BernoulliMaskerParams(ratio=0.0), BuildContext()).generate(10, (8, 8), generator).any()
    assert BernoulliMasker(BernoulliMaskerParams(ratio=1.0), BuildContext()).generate(10, (8, 8), generator).all()
    masker = BernoulliMasker(BernoulliMaskerParams(), BuildContext())
    a = masker.generate(16, (8, 8), torch.Generator().manual_seed(2))
    b = masker.generate(16, (8, 8), torch.Generator().manual_seed(2))
    assert torch.equal(a, b)
    assert not torch.equal(a, masker.generate(16, (8, 8), torch.Generator().manual_seed(3)))
    assert masker.generate(0, (8, 8), generator).shape == (0, 64)
