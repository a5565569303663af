"""The batched colour operations: the fused affine maps against kornia's operations one by one."""

from __future__ import annotations

import math

import kornia
import torch

from sslkit_plugins.augmentations.colour import (
    GRAY_WEIGHTS,
    affine_colour_maps,
    hue_rotation,
    sequential_colour,
    solarize_,
)


def apply(matrix: torch.Tensor, offset: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    return (matrix @ x.flatten(2) + offset[:, :, None]).view_as(x)


def random_jitter(n: int, hue: float = 0.0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    factors = torch.stack(
        [0.8 + 0.4 * torch.rand(n, generator=g) for _ in range(3)] + [hue * (2 * torch.rand(n, generator=g) - 1)], dim=1
    ).double()
    order = torch.argsort(torch.rand(n, 4, generator=g), dim=1)
    jitter = torch.rand(n, generator=g) < 0.8
    return jitter, factors, order


def test_affine_maps_equal_the_sequential_operations_without_hue_or_clamping() -> None:
    n = 64
    x = 0.35 + 0.3 * torch.rand(n, 3, 6, 6, generator=torch.Generator().manual_seed(1))  # stays inside [0, 1]
    jitter, factors, order = random_jitter(n)
    gray = torch.arange(n) % 3 == 0
    matrix, offset = affine_colour_maps(x.mean(dim=(2, 3)), jitter, factors, order, gray, torch.zeros(3), torch.ones(3))
    expected = sequential_colour(x.clone(), jitter, factors, order, gray)
    assert torch.allclose(apply(matrix, offset, x), expected, atol=1e-5)
    assert not torch.allclose(expected, x, atol=1e-2)  # the jitter did something


def test_order_matters_for_contrast_after_brightness() -> None:
    x = torch.full((2, 3, 2, 2), 0.5)
    x[:, 0] = 0.2
    factors = torch.tensor([[1.4, 0.5, 1.0, 0.0]] * 2, dtype=torch.float64)
    order = torch.tensor([[0, 1, 2, 3], [1, 0, 2, 3]])  # brightness then contrast / contrast then brightness
    jitter, gray = torch.ones(2, dtype=torch.bool), torch.zeros(2, dtype=torch.bool)
    matrix, offset = affine_colour_maps(x.mean(dim=(2, 3)), jitter, factors, order, gray, torch.zeros(3), torch.ones(3))
    out = apply(matrix, offset, x)
    luma = 0.2 * GRAY_WEIGHTS[0] + 0.5 * (1 - GRAY_WEIGHTS[0])
    first = 0.5 * (1.4 * 0.2) + 0.5 * (1.4 * luma)  # contrast blends with the mean gray after brightness
    second = 1.4 * (0.5 * 0.2 + 0.5 * luma)
    assert math.isclose(out[0, 0, 0, 0].item(), first, rel_tol=1e-5)
    assert math.isclose(out[1, 0, 0, 0].item(), second, rel_tol=1e-5)


def test_normalisation_is_folded_into_the_map() -> None:
    x = torch.rand(4, 3, 5, 5)
    jitter, factors, order = random_jitter(4)
    gray = torch.zeros(4, dtype=torch.bool)
    mean, std = torch.tensor([0.485, 0.456, 0.406]), torch.tensor([0.229, 0.224, 0.225])
    plain = affine_colour_maps(x.mean(dim=(2, 3)), jitter, factors, order, gray, torch.zeros(3), torch.ones(3))
    folded = affine_colour_maps(x.mean(dim=(2, 3)), jitter, factors, order, gray, mean, std)
    expected = (apply(*plain, x) - mean.view(3, 1, 1)) / std.view(3, 1, 1)
    assert torch.allclose(apply(*folded, x), expected, atol=1e-5)


def test_grayscale_gives_equal_channels_of_luma() -> None:
    x = torch.rand(3, 3, 4, 4)
    jitter = torch.zeros(3, dtype=torch.bool)
    gray = torch.tensor([True, False, True])
    factors, order = torch.ones(3, 4, dtype=torch.float64), torch.arange(4).expand(3, 4)
    out = apply(*affine_colour_maps(x.mean(dim=(2, 3)), jitter, factors, order, gray, torch.zeros(3), torch.ones(3)), x)
    luma = (torch.tensor(GRAY_WEIGHTS).view(1, 3, 1, 1) * x).sum(dim=1)
    assert torch.allclose(out[0], luma[0].expand(3, 4, 4), atol=1e-6)
    assert torch.allclose(out[1], x[1], atol=1e-6)


def test_hue_rotation_is_a_rotation_about_the_grey_axis() -> None:
    shift = torch.tensor([0.0, 0.1, -0.05, 0.25])
    rot = hue_rotation(shift)
    assert torch.allclose(rot @ rot.transpose(1, 2), torch.eye(3).expand(4, 3, 3), atol=1e-6)
    assert torch.allclose(rot @ torch.ones(3), torch.ones(4, 3), atol=1e-6)  # greys unchanged
    assert torch.allclose(rot[0], torch.eye(3))
    red = torch.tensor([1.0, 0.0, 0.0])
    chroma = red - red.mean()
    turned = rot[1] @ red - (rot[1] @ red).mean()
    angle = torch.acos(chroma @ turned / (chroma.norm() * turned.norm()))
    assert math.isclose(angle.item(), 0.1 * 2 * math.pi, rel_tol=1e-4)


def test_hue_rotation_shifts_hsv_hue_by_about_the_same_amount() -> None:
    g = torch.Generator().manual_seed(2)
    colours = 0.2 + 0.6 * torch.rand(500, 3, 1, 1, generator=g)
    for shift in (0.05, -0.08):
        rotated = (hue_rotation(torch.full((500,), shift)) @ colours.view(500, 3, 1)).view_as(colours).clamp(0, 1)
        before = kornia.color.rgb_to_hsv(colours)[:, 0]
        after = kornia.color.rgb_to_hsv(rotated)[:, 0]
        delta = torch.remainder(after - before + math.pi, 2 * math.pi) - math.pi  # radians, wrapped
        saturated = kornia.color.rgb_to_hsv(colours)[:, 1] > 0.3
        assert abs(delta[saturated].median().item() - shift * 2 * math.pi) < 0.05


def test_solarize_inverts_only_values_at_or_above_the_threshold_of_selected_crops() -> None:
    x = torch.tensor([0.2, 0.5, 0.8]).view(1, 3, 1, 1).repeat(3, 1, 1, 1)
    solarize_(x, torch.tensor([1]), torch.full((3,), 0.5), torch.ones(3))
    assert torch.allclose(x[1].flatten(), torch.tensor([0.2, 0.5, 0.2]))
    assert torch.allclose(x[0].flatten(), torch.tensor([0.2, 0.5, 0.8]))
