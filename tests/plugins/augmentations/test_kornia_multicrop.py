"""kornia_multicrop: the drawn parameters are what the crops show, batched on the device."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from kornia.filters import gaussian_blur2d
from PIL import Image

from sslkit.components import Augmentation, BuildContext
from sslkit.registry import create
from sslkit_plugins.augmentations.kornia_multicrop import KorniaMultiCrop, KorniaMultiCropParams
from sslkit_plugins.augmentations.params import blur_kernel_size


def make(**overrides) -> KorniaMultiCrop:
    values = {"global_crop_size": 24, "local_crop_size": 12, "n_local": 4} | overrides
    return KorniaMultiCrop(KorniaMultiCropParams(**values), BuildContext())


def run(aug: KorniaMultiCrop, images: list[Image.Image], seeds: torch.Tensor):
    prepared = [aug.prepare(image, int(seed)) for image, seed in zip(images, seeds, strict=True)]
    batch = {key: torch.stack([p[key] for p in prepared]) for key in prepared[0]}
    return aug(batch, seeds, torch.device("cpu"))


def test_registered_and_satisfies_the_protocol() -> None:
    aug = create("augmentation", "kornia_multicrop", n_local=2, global_crop_size=32, local_crop_size=16)
    assert isinstance(aug, Augmentation) and aug.canvas_size == 37 and aug.n_local == 2


def test_prepare_resizes_to_the_canvas_and_keeps_the_original_size(ramp) -> None:
    out = make(canvas_size=30).prepare(ramp(20, 50), 0)
    assert out["image"].shape == (3, 30, 30) and out["image"].dtype == torch.uint8
    assert out["size"].tolist() == [20, 50]


def test_shapes_and_crop_major_layout(constant_image) -> None:
    aug = make(jitter_p=0.0, grayscale_p=0.0, global_solarize_p=(0.0,), mean=(0, 0, 0), std=(1, 1, 1))
    images = [constant_image(v) for v in (10, 120, 250)]
    crops = run(aug, images, torch.tensor([1, 2, 3]))
    assert crops.global_crops.shape == (2 * 3, 3, 24, 24) and crops.local_crops.shape == (4 * 3, 3, 12, 12)
    assert (crops.n_global, crops.n_local, crops.batch_size) == (2, 4, 3)
    values = torch.tensor([10, 120, 250]) / 255
    for c in range(2):  # row c * B + b holds image b
        assert torch.allclose(crops.global_crops[c * 3 : (c + 1) * 3].mean(dim=(1, 2, 3)), values, atol=1e-4)
    for c in range(4):
        assert torch.allclose(crops.local_crops[c * 3 : (c + 1) * 3].mean(dim=(1, 2, 3)), values, atol=1e-4)


@pytest.mark.parametrize("height,width", [(48, 48), (30, 60)])
def test_crops_show_the_drawn_boxes_and_flips(ramp, max_box_errors, no_colour, height, width) -> None:
    aug = make(canvas_size=48, **no_colour)
    seeds = torch.arange(6) * 101
    crops = run(aug, [ramp(height, width)] * 6, seeds)
    params = aug.draw_params(seeds, torch.tensor([[height, width]] * 6))
    # 8-bit rounding and resampling cost ~1/255; a box off by one pixel would cost >= 1/60.
    assert max(max_box_errors(crops, params, height, width)) < 3 / 255


def test_grayscale_solarisation_and_blur_do_what_the_parameters_say(constant_image) -> None:
    aug = make(
        jitter_p=0.0,
        grayscale_p=0.5,
        global_blur_p=(0.0,),
        local_blur_p=0.0,
        global_solarize_p=(0.0, 0.5),
        mean=(0, 0, 0),
        std=(1, 1, 1),
    )
    rng = np.random.default_rng(0)
    images = [Image.fromarray(rng.integers(0, 256, (40, 40, 3), dtype=np.uint8)) for _ in range(8)]
    seeds = torch.arange(8) + 1000
    crops = run(aug, images, seeds)
    params = aug.draw_params(seeds)
    glob = crops.global_crops.view(2, 8, 3, 24, 24)
    channels_equal = (glob[:, :, 0] - glob[:, :, 2]).abs().amax(dim=(2, 3)) < 1e-5
    assert torch.equal(channels_equal, params.grayscale[:2])
    solarised = glob.amax(dim=(2, 3, 4)) <= 128 / 255 + 1e-5  # every value >= 128/255 was inverted
    assert torch.equal(solarised[1], params.solarize[1]) and not solarised[0].any()

    blurry = make(
        jitter_p=0.0,
        grayscale_p=0.0,
        global_blur_p=(1.0, 0.5),
        local_blur_p=0.0,
        global_solarize_p=(0.0,),
        mean=(0, 0, 0),
        std=(1, 1, 1),
    )
    sharp = make(
        jitter_p=0.0,
        grayscale_p=0.0,
        global_blur_p=(0.0,),
        local_blur_p=0.0,
        global_solarize_p=(0.0,),
        mean=(0, 0, 0),
        std=(1, 1, 1),
    )
    blurred, plain = run(blurry, images, seeds).global_crops, run(sharp, images, seeds).global_crops
    p = blurry.draw_params(seeds)
    kernel = blur_kernel_size(24, 0.04)
    for row in range(16):
        c, b = divmod(row, 8)
        if p.blur[c, b]:
            sigma = torch.full((1, 2), float(p.blur_sigma[c, b]))
            assert torch.allclose(blurred[row], gaussian_blur2d(plain[row : row + 1], kernel, sigma)[0], atol=1e-5)
        else:
            assert torch.equal(blurred[row], plain[row])


@pytest.mark.parametrize("colour", ["affine", "sequential"])
def test_brightness_factors_are_applied(constant_image, colour) -> None:
    aug = make(
        colour=colour,
        jitter_p=1.0,
        contrast=0.0,
        saturation=0.0,
        hue=0.0,
        grayscale_p=0.0,
        global_blur_p=(0.0,),
        local_blur_p=0.0,
        global_solarize_p=(0.0,),
        mean=(0, 0, 0),
        std=(1, 1, 1),
    )
    seeds = torch.arange(5) + 7
    crops = run(aug, [constant_image(100)] * 5, seeds)
    brightness = aug.draw_params(seeds).jitter_factors[..., 0].float()  # [C, B]
    expected = (100 / 255 * brightness[:2]).clamp(0, 1).reshape(-1)
    assert torch.allclose(crops.global_crops.mean(dim=(1, 2, 3)), expected, atol=1e-5)


def test_colour_modes_agree_without_hue_and_with_normalisation() -> None:
    rng = np.random.default_rng(1)
    images = [Image.fromarray(rng.integers(90, 170, (32, 32, 3), dtype=np.uint8)) for _ in range(6)]
    seeds = torch.arange(6) * 13
    common = {"hue": 0.0, "brightness": 0.2, "contrast": 0.2}
    fused, steps = (
        run(make(colour="affine", **common), images, seeds),
        run(make(colour="sequential", **common), images, seeds),
    )
    assert torch.allclose(fused.global_crops, steps.global_crops, atol=1e-4)
    assert torch.allclose(fused.local_crops, steps.local_crops, atol=1e-4)


def test_deterministic_and_each_image_depends_only_on_its_seed(ramp) -> None:
    aug = make()
    images = [ramp(40, 40), ramp(30, 50), ramp(50, 30)]
    seeds = torch.tensor([11, 22, 33])
    a, b = run(aug, images, seeds), run(aug, images, seeds)
    assert torch.equal(a.global_crops, b.global_crops) and torch.equal(a.local_crops, b.local_crops)
    alone = run(aug, images[1:2], seeds[1:2])
    assert torch.allclose(alone.global_crops, a.global_crops.view(2, 3, 3, 24, 24)[:, 1], atol=1e-6)
    assert torch.allclose(alone.local_crops, a.local_crops.view(4, 3, 3, 12, 12)[:, 1], atol=1e-6)
    other = run(aug, images, seeds + 1)
    assert not torch.allclose(other.global_crops, a.global_crops)


def test_no_local_crops() -> None:
    aug = make(n_local=0)
    crops = run(aug, [Image.new("RGB", (20, 20), (1, 2, 3))], torch.tensor([0]))
    assert crops.local_crops is None and crops.n_local == 0 and crops.global_crops.shape[0] == 2
