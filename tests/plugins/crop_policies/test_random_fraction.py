"""Tests of the ``random_fraction`` crop policy: exact counts, per-image distribution, uniformity."""

from __future__ import annotations

import torch

from sslkit.components import BuildContext, CropPolicy
from sslkit_plugins.crop_policies.random_fraction import RandomFraction, RandomFractionParams


def test_exact_count_per_global_batch() -> None:
    generator = torch.Generator().manual_seed(0)
    for fraction, n_global, batch in ((0.5, 2, 64), (0.5, 2, 7), (0.3, 3, 10), (1.0, 2, 5), (0.0, 2, 5)):
        policy = RandomFraction(RandomFractionParams(fraction=fraction), BuildContext())
        assert isinstance(policy, CropPolicy)
        selected = policy.select(n_global, batch, generator)
        assert selected.shape == (n_global, batch) and selected.dtype == torch.bool
        assert int(selected.sum()) == int(n_global * batch * fraction)


def test_per_image_distribution_at_one_half() -> None:
    policy = RandomFraction(RandomFractionParams(fraction=0.5), BuildContext())
    generator = torch.Generator().manual_seed(1)
    per_image = torch.cat([policy.select(2, 256, generator).sum(0) for _ in range(40)])  # 10,240 images
    shares = torch.bincount(per_image, minlength=3).double() / per_image.numel()
    # without replacement within a batch of 512 crops: P(both) = (256 * 255) / (512 * 511) ~ 0.2495
    assert torch.allclose(shares, torch.tensor([0.25, 0.5, 0.25], dtype=torch.float64), atol=0.015)


def test_every_crop_equally_likely_and_draws_differ() -> None:
    policy = RandomFraction(RandomFractionParams(fraction=0.25), BuildContext())
    generator = torch.Generator().manual_seed(2)
    draws = torch.stack([policy.select(2, 16, generator) for _ in range(4000)]).double()
    assert (draws.mean(0) - 0.25).abs().max() < 0.04
    assert not torch.equal(draws[0], draws[1])


def test_determinism() -> None:
    policy = RandomFraction(RandomFractionParams(), BuildContext())
    a = policy.select(2, 32, torch.Generator().manual_seed(3))
    b = policy.select(2, 32, torch.Generator().manual_seed(3))
    assert torch.equal(a, b)
