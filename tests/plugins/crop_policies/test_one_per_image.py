"""Tests of the ``one_per_image`` crop policy: exactly one masked global crop per image."""

from __future__ import annotations

import torch

from sslkit.components import BuildContext, CropPolicy
from sslkit_plugins.crop_policies.one_per_image import OnePerImage, OnePerImageParams


def test_exactly_one_per_image() -> None:
    policy = OnePerImage(OnePerImageParams(), BuildContext())
    assert isinstance(policy, CropPolicy)
    generator = torch.Generator().manual_seed(0)
    for n_global, batch in ((2, 64), (3, 9), (1, 4)):
        selected = policy.select(n_global, batch, generator)
        assert selected.shape == (n_global, batch) and selected.dtype == torch.bool
        assert torch.all(selected.sum(0) == 1)
        assert int(selected.sum()) == batch


def test_each_crop_index_chosen_uniformly() -> None:
    policy = OnePerImage(OnePerImageParams(), BuildContext())
    generator = torch.Generator().manual_seed(1)
    draws = torch.stack([policy.select(2, 100, generator) for _ in range(100)]).double()  # 10,000 images
    first_share = draws[:, 0].mean()
    assert abs(first_share - 0.5) < 0.02  # 4 standard errors
    assert (draws[:, 0].mean(0) - 0.5).abs().max() < 0.2  # every image position, 100 draws each
    three = torch.stack([policy.select(3, 100, generator) for _ in range(100)]).double()
    assert (three.mean((0, 2)) - 1 / 3).abs().max() < 0.02


def test_determinism() -> None:
    policy = OnePerImage(OnePerImageParams(), BuildContext())
    a = policy.select(2, 32, torch.Generator().manual_seed(2))
    assert torch.equal(a, policy.select(2, 32, torch.Generator().manual_seed(2)))
    assert not torch.equal(a, policy.select(2, 32, torch.Generator().manual_seed(3)))
