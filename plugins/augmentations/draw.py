"""Drawing every random parameter of every crop of a batch, as plain tensors.

Both multi-crop plugins draw with :func:`draw_crop_params`, so for the same sample seeds and
image sizes they agree on every box, flip, jitter factor, blur and solarisation decision and
differ only in how they resample and compute colours. Each quantity is one slot of
:func:`sslkit_plugins.augmentations.counter_random.uniforms` (a pure function of the image's
sample seed, the crop index and the slot).

Crop boxes follow torchvision's ``RandomResizedCrop.get_params``: up to 10 attempts of an area
fraction uniform in ``scale`` and a log-uniform aspect ratio in ``ratio``, keeping the first
attempt that fits in the image (integer sides, rounded), else a centred crop of the whole
image with the aspect ratio clamped into ``ratio``. The top-left corner is uniform over the
positions where the box fits.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields

import torch
from torch import Tensor

from sslkit_plugins.augmentations.counter_random import uniforms
from sslkit_plugins.augmentations.params import MultiCropParams

ATTEMPTS = 10
# Slot layout of one crop's uniforms.
_AREA = slice(0, ATTEMPTS)
_LOG_RATIO = slice(ATTEMPTS, 2 * ATTEMPTS)
_TOP, _LEFT, _FLIP, _JITTER = 20, 21, 22, 23
_FACTORS = slice(24, 28)  # brightness, contrast, saturation, hue
_ORDER = slice(28, 32)
_GRAY, _BLUR, _SIGMA, _SOLARIZE = 32, 33, 34, 35
N_SLOTS = 36

#: Indices of the colour-jitter operations in ``jitter_factors`` and ``jitter_order``.
BRIGHTNESS, CONTRAST, SATURATION, HUE = 0, 1, 2, 3


@dataclass
class CropParams:
    """Every crop's parameters, shaped ``[n_crops, B]`` (crop-major, global crops first).

    Boxes are integer pixel coordinates in the original image (``image_size[b] = (H, W)``).
    ``jitter_factors[..., k]`` is the factor of operation ``k`` (brightness, contrast and
    saturation multiplicative factors, hue shift in turns) and ``jitter_order[c, b]`` is the
    permutation of ``0..3`` in which the operations are applied when ``jitter`` is set.
    """

    image_size: Tensor  # [B, 2] int64 (H, W)
    top: Tensor  # [C, B] int64
    left: Tensor  # [C, B] int64
    height: Tensor  # [C, B] int64
    width: Tensor  # [C, B] int64
    flip: Tensor  # [C, B] bool
    jitter: Tensor  # [C, B] bool
    jitter_factors: Tensor  # [C, B, 4] float64
    jitter_order: Tensor  # [C, B, 4] int64
    grayscale: Tensor  # [C, B] bool
    blur: Tensor  # [C, B] bool
    blur_sigma: Tensor  # [C, B] float64
    solarize: Tensor  # [C, B] bool

    def crops(self, start: int, stop: int) -> CropParams:
        """The parameters of crops ``start .. stop - 1`` only (e.g. the global crops)."""
        values = {f.name: getattr(self, f.name) for f in fields(self)}
        return CropParams(**{k: v if k == "image_size" else v[start:stop] for k, v in values.items()})

    def area_fraction(self) -> Tensor:
        """Box area over image area, ``[C, B]``."""
        area = (self.image_size[:, 0] * self.image_size[:, 1]).to(torch.float64)
        return (self.height * self.width).to(torch.float64) / area


def _boxes(
    u: Tensor, sizes: Tensor, scale_lo: Tensor, scale_hi: Tensor, ratio: tuple[float, float]
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Vectorised RandomResizedCrop boxes: ``u`` is ``[C, B, N_SLOTS]``; returns top, left, h, w."""
    img_h = sizes[:, 0].to(torch.float64)[None, :, None]  # [1, B, 1]
    img_w = sizes[:, 1].to(torch.float64)[None, :, None]
    area = img_h * img_w
    lo, hi = scale_lo[:, None, None], scale_hi[:, None, None]
    target = area * (lo + (hi - lo) * u[..., _AREA])
    log_lo, log_hi = math.log(ratio[0]), math.log(ratio[1])
    aspect = torch.exp(log_lo + (log_hi - log_lo) * u[..., _LOG_RATIO])
    w = torch.round(torch.sqrt(target * aspect))
    h = torch.round(torch.sqrt(target / aspect))
    fits = (w > 0) & (w <= img_w) & (h > 0) & (h <= img_h)
    first = fits.to(torch.uint8).argmax(dim=-1, keepdim=True)
    found = fits.any(dim=-1)
    w = w.gather(-1, first).squeeze(-1)
    h = h.gather(-1, first).squeeze(-1)
    img_h, img_w = img_h[..., 0].expand_as(w), img_w[..., 0].expand_as(w)
    top = torch.floor(u[..., _TOP] * (img_h - h + 1))
    left = torch.floor(u[..., _LEFT] * (img_w - w + 1))
    # Fallback when no attempt fits: the whole image, aspect ratio clamped into ``ratio``.
    in_ratio = img_w / img_h
    fb_w = torch.where(in_ratio > ratio[1], torch.round(img_h * ratio[1]), img_w)
    fb_h = torch.where(in_ratio < ratio[0], torch.round(img_w / ratio[0]), img_h)
    fb_top = torch.div(img_h - fb_h, 2, rounding_mode="floor")
    fb_left = torch.div(img_w - fb_w, 2, rounding_mode="floor")

    def pick(drawn: Tensor, fallback: Tensor) -> Tensor:
        return torch.where(found, drawn, fallback).to(torch.int64)

    return pick(top, fb_top), pick(left, fb_left), pick(h, fb_h), pick(w, fb_w)


def draw_crop_params(recipe: MultiCropParams, sample_seeds: Tensor | list[int], image_sizes: Tensor) -> CropParams:
    """Draw the parameters of every crop of a batch.

    ``sample_seeds``: ``[B]`` int64, one per image; ``image_sizes``: ``[B, 2]`` (H, W) of the
    images the boxes refer to. The result depends only on these and on ``recipe``.
    """
    sizes = torch.as_tensor(image_sizes, dtype=torch.int64).reshape(-1, 2).cpu()
    n_crops, n_global = recipe.n_crops, recipe.n_global
    u = uniforms(sample_seeds, n_crops, N_SLOTS)
    if u.shape[1] != sizes.shape[0]:
        raise ValueError(f"{u.shape[1]} sample seeds but {sizes.shape[0]} image sizes")

    is_global = torch.arange(n_crops) < n_global
    scale_lo = torch.where(is_global, recipe.global_scale[0], recipe.local_scale[0]).to(torch.float64)
    scale_hi = torch.where(is_global, recipe.global_scale[1], recipe.local_scale[1]).to(torch.float64)
    top, left, height, width = _boxes(u, sizes, scale_lo, scale_hi, recipe.ratio)

    bounds = torch.tensor(
        [
            [max(0.0, 1 - recipe.brightness), 1 + recipe.brightness],
            [max(0.0, 1 - recipe.contrast), 1 + recipe.contrast],
            [max(0.0, 1 - recipe.saturation), 1 + recipe.saturation],
            [-recipe.hue, recipe.hue],
        ],
        dtype=torch.float64,
    )
    factors = bounds[:, 0] + (bounds[:, 1] - bounds[:, 0]) * u[..., _FACTORS]
    blur_p = torch.tensor([recipe.blur_p(c) for c in range(n_crops)], dtype=torch.float64)[:, None]
    solarize_p = torch.tensor([recipe.solarize_p(c) for c in range(n_crops)], dtype=torch.float64)[:, None]
    sigma_lo, sigma_hi = recipe.blur_sigma
    return CropParams(
        image_size=sizes,
        top=top,
        left=left,
        height=height,
        width=width,
        flip=u[..., _FLIP] < recipe.flip_p,
        jitter=u[..., _JITTER] < recipe.jitter_p,
        jitter_factors=factors,
        jitter_order=torch.argsort(u[..., _ORDER], dim=-1),
        grayscale=u[..., _GRAY] < recipe.grayscale_p,
        blur=u[..., _BLUR] < blur_p,
        blur_sigma=sigma_lo + (sigma_hi - sigma_lo) * u[..., _SIGMA],
        solarize=u[..., _SOLARIZE] < solarize_p,
    )
