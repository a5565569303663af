"""torchvision_multicrop: per-image crops in the workers; agreement with kornia_multicrop."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from sslkit.components import Augmentation, BuildContext
from sslkit.registry import create
from sslkit_plugins.augmentations.kornia_multicrop import KorniaMultiCrop, KorniaMultiCropParams
from sslkit_plugins.augmentations.params import MultiCropParams
from sslkit_plugins.augmentations.torchvision_multicrop import TorchvisionMultiCrop


def make(**overrides) -> TorchvisionMultiCrop:
    values = {"global_crop_size": 24, "local_crop_size": 12, "n_local": 4} | overrides
    return TorchvisionMultiCrop(MultiCropParams(**values), BuildContext())


def run(aug, images: list[Image.Image], seeds: torch.Tensor):
    prepared = [aug.prepare(image, int(seed)) for image, seed in zip(images, seeds, strict=True)]
    batch = {key: torch.stack([p[key] for p in prepared]) for key in prepared[0]}
    return aug(batch, seeds, torch.device("cpu"))


def test_registered_and_prepare_returns_uint8_crops(ramp) -> None:
    aug = create("augmentation", "torchvision_multicrop", global_crop_size=20, local_crop_size=10, n_local=3)
    assert isinstance(aug, Augmentation)
    out = aug.prepare(ramp(30, 40), 5)
    assert out["global"].shape == (2, 3, 20, 20) and out["local"].shape == (3, 3, 10, 10)
    assert out["global"].dtype == torch.uint8
    assert "local" not in make(n_local=0).prepare(ramp(30, 40), 5)


def test_crops_show_the_drawn_boxes_and_flips(ramp, max_box_errors, no_colour) -> None:
    aug = make(**no_colour)
    seeds = torch.arange(6) * 31
    height, width = 36, 60
    crops = run(aug, [ramp(height, width)] * 6, seeds)
    params = aug.draw_params(seeds, torch.tensor([[height, width]] * 6))
    # PIL's antialiased filter reaches past the box edge when shrinking: ~1 source pixel at the border.
    assert max(max_box_errors(crops, params, height, width)) < 1.2 / min(height, width) + 2 / 255


def test_normalisation_and_crop_major_order(constant_image) -> None:
    aug = make(jitter_p=0.0, grayscale_p=0.0, global_solarize_p=(0.0,))
    crops = run(aug, [constant_image(50), constant_image(200)], torch.tensor([1, 2]))
    mean, std = torch.tensor([0.485, 0.456, 0.406]), torch.tensor([0.229, 0.224, 0.225])
    for b, value in enumerate((50, 200)):
        expected = ((value / 255 - mean) / std).view(3, 1, 1).expand(3, 24, 24)
        for c in range(2):
            assert torch.allclose(crops.global_crops[c * 2 + b], expected, atol=1e-5)


def test_grayscale_solarisation_and_brightness_follow_the_parameters(constant_image) -> None:
    rng = np.random.default_rng(0)
    images = [Image.fromarray(rng.integers(0, 256, (40, 40, 3), dtype=np.uint8)) for _ in range(8)]
    seeds = torch.arange(8) + 500
    aug = make(
        jitter_p=0.0,
        grayscale_p=0.5,
        global_blur_p=(0.0,),
        local_blur_p=0.0,
        global_solarize_p=(0.0, 0.5),
        mean=(0, 0, 0),
        std=(1, 1, 1),
    )
    glob = run(aug, images, seeds).global_crops.view(2, 8, 3, 24, 24)
    params = aug.draw_params(seeds, torch.tensor([[40, 40]] * 8))
    assert torch.equal((glob[:, :, 0] == glob[:, :, 2]).all(dim=(2, 3)), params.grayscale[:2])
    solarised = glob.amax(dim=(2, 3, 4)) <= 127 / 255 + 1e-6
    assert torch.equal(solarised[1], params.solarize[1]) and not solarised[0].any()

    bright = make(
        jitter_p=1.0,
        contrast=0.0,
        saturation=0.0,
        hue=0.0,
        grayscale_p=0.0,
        global_blur_p=(0.0,),
        global_solarize_p=(0.0,),
        mean=(0, 0, 0),
        std=(1, 1, 1),
    )
    crops = run(bright, [constant_image(100)] * 4, seeds[:4])
    factors = bright.draw_params(seeds[:4], torch.tensor([[40, 40]] * 4)).jitter_factors[:2, :, 0].float()
    expected = (100 * factors).round().clamp(0, 255).reshape(-1) / 255
    assert torch.allclose(crops.global_crops.mean(dim=(1, 2, 3)), expected, atol=1 / 255 + 1e-6)


@pytest.mark.parametrize("plugin", ["torchvision", "kornia"])
def test_realised_solarisation_rates_per_crop_position(constant_image, plugin) -> None:
    recipe = {
        "global_crop_size": 8,
        "local_crop_size": 8,
        "n_local": 2,
        "jitter_p": 0.0,
        "grayscale_p": 0.0,
        "mean": (0, 0, 0),
        "std": (1, 1, 1),
    }
    if plugin == "torchvision":
        aug = make(**recipe)
    else:
        aug = KorniaMultiCrop(KorniaMultiCropParams(**recipe), BuildContext())
    n = 100 if plugin == "torchvision" else 800  # per-image CPU work vs one batched call
    crops = run(aug, [constant_image(204, size=12)] * n, torch.arange(n) * 3 + 1)
    solarised = (crops.global_crops.mean(dim=(1, 2, 3)) < 0.5).view(2, n).double().mean(dim=1)
    assert solarised[0] == 0 and solarised[1] > 0 and abs(solarised[1].item() - 0.2) < 5 * (0.16 / n) ** 0.5
    assert (crops.local_crops.mean(dim=(1, 2, 3)) > 0.5).all()


@pytest.mark.parametrize("plugin", ["torchvision", "kornia"])
def test_both_plugins_draw_with_the_documented_rates(plugin) -> None:
    n = 3000
    seeds = torch.arange(n) + 17
    if plugin == "torchvision":
        params = make(n_local=2).draw_params(seeds, torch.tensor([[64, 64]] * n))
    else:
        params = KorniaMultiCrop(KorniaMultiCropParams(n_local=2, canvas_size=64), BuildContext()).draw_params(seeds)
    area = params.area_fraction()
    assert area[:2].min() > 0.30 and area[2:].max() < 0.34
    rates = {name: getattr(params, name).double().mean(dim=1) for name in ("flip", "grayscale", "blur", "solarize")}
    tol = 5 * (0.25 / n) ** 0.5
    assert (rates["flip"] - 0.5).abs().max() < tol and (rates["grayscale"] - 0.2).abs().max() < tol
    assert torch.allclose(rates["blur"], torch.tensor([1.0, 0.1, 0.5, 0.5], dtype=torch.float64), atol=tol)
    assert torch.allclose(rates["solarize"], torch.tensor([0.0, 0.2, 0.0, 0.0], dtype=torch.float64), atol=tol)


def test_same_seeds_give_the_same_crops_as_kornia(ramp, no_colour) -> None:
    recipe = {"global_crop_size": 24, "local_crop_size": 12, "n_local": 4} | no_colour
    images = [ramp(48, 48), ramp(40, 56)]
    seeds = torch.tensor([3, 4])
    ours = run(TorchvisionMultiCrop(MultiCropParams(**recipe), BuildContext()), images, seeds)
    theirs = run(KorniaMultiCrop(KorniaMultiCropParams(canvas_size=48, **recipe), BuildContext()), images, seeds)
    assert (ours.global_crops - theirs.global_crops).abs().mean() < 2 / 255
    assert (ours.local_crops - theirs.local_crops).abs().mean() < 2 / 255
    other_seeds = run(TorchvisionMultiCrop(MultiCropParams(**recipe), BuildContext()), images, seeds + 9)
    assert not torch.equal(other_seeds.global_crops, ours.global_crops)


def test_deterministic(ramp) -> None:
    aug = make()
    images, seeds = [ramp(30, 30), ramp(33, 41)], torch.tensor([8, 9])
    a, b = run(aug, images, seeds), run(aug, images, seeds)
    assert torch.equal(a.global_crops, b.global_crops) and torch.equal(a.local_crops, b.local_crops)
