"""Distributions of the drawn crop parameters (shared by both multi-crop plugins) over many draws."""

from __future__ import annotations

import math

import pytest
import torch
from torchvision.transforms import v2

from sslkit.errors import SSLKitError
from sslkit_plugins.augmentations.counter_random import uniforms
from sslkit_plugins.augmentations.draw import draw_crop_params
from sslkit_plugins.augmentations.params import MultiCropParams, blur_kernel_size

N = 4000  # images per statistical test: a rate p is within 5 sigma = 5 * sqrt(p (1 - p) / N) <= 0.04


def within_sigma(rate: float, p: float, n: int = N, sigmas: float = 5.0) -> bool:
    return abs(rate - p) <= sigmas * math.sqrt(max(p * (1 - p), 1e-12) / n) + 1e-9


@pytest.fixture(scope="module")
def drawn():
    recipe = MultiCropParams()
    sizes = torch.tensor([[600, 800]] * N)
    return recipe, draw_crop_params(recipe, torch.arange(N) * 7919 + 11, sizes)


def test_uniforms_are_uniform_and_depend_only_on_seed_crop_slot() -> None:
    u = uniforms(torch.arange(2000), 3, 5)
    assert u.shape == (3, 2000, 5) and u.min() >= 0 and u.max() < 1
    assert abs(u.mean().item() - 0.5) < 0.01 and abs(u.var().item() - 1 / 12) < 0.005
    flat = u.reshape(-1, 5)
    assert torch.corrcoef(flat.T).sub(torch.eye(5, dtype=flat.dtype)).abs().max() < 0.03  # slots uncorrelated
    sub = uniforms(torch.tensor([7, 3]), 2, 5)  # a different batch: same values for the same seeds
    assert torch.equal(sub[:, 0], u[:2, 7]) and torch.equal(sub[:, 1], u[:2, 3])


def test_area_fraction_and_aspect_ratio_within_their_ranges(drawn) -> None:
    recipe, p = drawn
    area, aspect = p.area_fraction(), (p.width / p.height).to(torch.float64)
    # Integer rounding of 600 x 800 boxes moves the fraction by < (w + h) / (H W) ~ 0.003.
    tol = 0.004
    glo, loc = area[: recipe.n_global], area[recipe.n_global :]
    assert glo.min() >= 0.32 - tol and glo.max() <= 1.0
    assert loc.min() >= 0.05 - tol and loc.max() <= 0.32 + tol
    assert aspect.min() >= 3 / 4 - 0.01 and aspect.max() <= 4 / 3 + 0.01
    assert (p.top >= 0).all() and (p.left >= 0).all()
    assert (p.top + p.height <= 600).all() and (p.left + p.width <= 800).all()
    # Local areas almost never need a second attempt: uniform on [0.05, 0.32].
    assert abs(loc.mean().item() - 0.185) < 0.005
    assert abs((loc < 0.185).double().mean().item() - 0.5) < 0.02


def test_area_distribution_matches_torchvision_random_resized_crop(drawn) -> None:
    _, p = drawn
    torch.manual_seed(0)
    image = torch.zeros(3, 600, 800)
    ours = p.area_fraction()[0]
    theirs = torch.tensor(
        [
            (lambda box: box[2] * box[3] / (600 * 800))(
                v2.RandomResizedCrop.get_params(image, [0.32, 1.0], [3 / 4, 4 / 3])
            )
            for _ in range(2000)
        ],
        dtype=torch.float64,
    )
    assert abs(ours.mean() - theirs.mean()) < 0.015
    for q in (0.1, 0.5, 0.9):
        assert abs(ours.quantile(q) - theirs.quantile(q)) < 0.025


def test_flip_jitter_and_grayscale_rates_per_crop(drawn) -> None:
    recipe, p = drawn
    for c in range(recipe.n_crops):
        assert within_sigma(p.flip[c].double().mean().item(), 0.5)
        assert within_sigma(p.jitter[c].double().mean().item(), 0.8)
        assert within_sigma(p.grayscale[c].double().mean().item(), 0.2)


def test_blur_and_solarize_rates_per_crop_position(drawn) -> None:
    _, p = drawn
    blur = p.blur.double().mean(dim=1)
    solarize = p.solarize.double().mean(dim=1)
    assert blur[0] == 1.0  # global crop 1 always blurred
    assert within_sigma(blur[1].item(), 0.1)
    assert all(within_sigma(b, 0.5) for b in blur[2:].tolist())
    assert solarize[0] == 0.0  # never on global crop 1
    assert within_sigma(solarize[1].item(), 0.2)
    assert (solarize[2:] == 0).all()
    sigma = p.blur_sigma
    assert sigma.min() >= 0.1 and sigma.max() <= 2.0 and abs(sigma.mean().item() - 1.05) < 0.02


def test_jitter_factors_and_orders(drawn) -> None:
    _, p = drawn
    f = p.jitter_factors.reshape(-1, 4)
    lows, highs = torch.tensor([0.6, 0.6, 0.8, -0.1]), torch.tensor([1.4, 1.4, 1.2, 0.1])
    assert (f.min(0).values >= lows.double()).all() and (f.max(0).values <= highs.double()).all()
    assert torch.allclose(f.mean(0), ((lows + highs) / 2).double(), atol=0.01)
    order = p.jitter_order.reshape(-1, 4)
    assert torch.equal(order.sort(dim=1).values, torch.arange(4).expand_as(order))  # permutations
    first = torch.bincount(order[:, 0], minlength=4).double() / len(order)
    assert torch.allclose(first, torch.full((4,), 0.25, dtype=torch.float64), atol=0.01)


def test_draws_are_deterministic_and_per_image() -> None:
    recipe = MultiCropParams()
    seeds, sizes = torch.tensor([5, 9, 13]), torch.tensor([[100, 120], [64, 64], [300, 200]])
    a = draw_crop_params(recipe, seeds, sizes)
    b = draw_crop_params(recipe, seeds, sizes)
    alone = draw_crop_params(recipe, seeds[1:2], sizes[1:2])
    for name in ("top", "left", "height", "width", "flip", "jitter_factors", "jitter_order", "blur_sigma"):
        assert torch.equal(getattr(a, name), getattr(b, name))
        assert torch.equal(getattr(a, name)[:, 1], getattr(alone, name)[:, 0])
    other = draw_crop_params(recipe, seeds + 1, sizes)
    assert not torch.equal(a.jitter_factors, other.jitter_factors)


def test_fallback_is_the_centred_crop_with_clamped_ratio() -> None:
    # A 10 x 400 strip: no box with aspect <= 4/3 covering >= 32% of it fits, as in torchvision.
    recipe = MultiCropParams(n_local=0)
    p = draw_crop_params(recipe, torch.arange(50), torch.tensor([[10, 400]] * 50))
    assert (p.height == 10).all() and (p.width == round(10 * 4 / 3)).all()
    assert (p.top == 0).all() and (p.left == (400 - 13) // 2).all()


def test_kernel_size_is_proportional_to_crop_size_and_odd() -> None:
    assert [blur_kernel_size(s, 0.04) for s in (224, 96, 32, 16, 500)] == [9, 5, 3, 3, 21]


def test_invalid_ranges_are_reported_together() -> None:
    with pytest.raises(SSLKitError, match=r"global_scale.*blur_sigma"):
        MultiCropParams(global_scale=(0.5, 0.3), blur_sigma=(0.0, 1.0))
    with pytest.raises(SSLKitError, match="global_solarize_p"):
        MultiCropParams(global_solarize_p=())
