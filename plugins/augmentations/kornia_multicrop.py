"""Multi-crop augmentation computed in batches on the training device (the default of every recipe).

Two stages (the :class:`sslkit.components.Augmentation` contract):

- ``prepare`` (loader workers, CPU): only decodes, and resizes the whole image to a fixed
  ``canvas_size`` square (PIL bilinear with antialiasing; the aspect ratio is restored below),
  returning ``{"image": uint8 [3, S, S], "size": int64 [2]}`` with the original (H, W).
- ``__call__`` (device): draws every crop's parameters from the sample seeds
  (:func:`~sslkit_plugins.augmentations.draw.draw_crop_params`, the same draws as
  ``torchvision_multicrop``), boxes in the *original* image's coordinates mapped onto the
  canvas, so crops keep the aspect ratios a RandomResizedCrop of the original image would
  have. Crop, resize and flip of every crop of one size are one bilinear ``grid_sample`` call
  (an axis-aligned affine grid per crop: kornia's ``crop_and_resize`` does the same through a
  per-crop perspective solve and was measured 2x slower on CPU); colour jitter, grayscale and
  normalisation are one per-crop colour matrix (``colour="affine"``, see
  :mod:`~sslkit_plugins.augmentations.colour`) or kornia.enhance operations one by one
  (``colour="sequential"``); then a Gaussian blur with per-crop sigma of the crops drawn for it
  (kornia's kernel and border, computed as in :mod:`~sslkit_plugins.augmentations.blur`), and
  solarisation of the crops drawn for it. Global crops are computed together, local crops
  together: a fixed number of batched operations per step, no per-image Python loop.

With the default canvas of 8/7 of the global crop size (256 px for 224 px crops), crops are
resampled from at most about 1.5x their size, where bilinear sampling without antialiasing is
adequate; larger originals are antialiased when the canvas is made.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import kornia
import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import Tensor

from sslkit.components import BuildContext, Crops
from sslkit.params import param
from sslkit_plugins.augmentations.blur import gaussian_blur_rows_
from sslkit_plugins.augmentations.colour import affine_colour_maps, sequential_colour, solarize_
from sslkit_plugins.augmentations.draw import CropParams, draw_crop_params
from sslkit_plugins.augmentations.params import MultiCropParams, blur_kernel_size


@dataclass
class KorniaMultiCropParams(MultiCropParams):
    """Multi-crop recipe parameters plus the device pipeline's own options."""

    canvas_size: int | None = param(
        None,
        "Side of the square every image is resized to in the loader workers "
        "(null: round(8/7 x global_crop_size), 256 px for 224 px crops).",
        ge=4,
    )
    colour: Literal["affine", "sequential"] = param(
        "affine",
        "Colour jitter as one fused per-crop colour matrix (fast; hue approximated by a rotation "
        "about the grey axis, one clamp) or as kornia.enhance operations one by one (torchvision's semantics).",
    )


def _crop_grids(params: CropParams, canvas: int, size: int) -> Tensor:
    """Sampling grids ``[B, n_crops * size, size, 2]``: the crops of one image stacked vertically.

    Box ``[x0, x0 + w] x [y0, y0 + h]`` (canvas pixels, edges) -> normalised coordinates with
    ``align_corners=False``, so output pixel centres sample the box like a resize of that
    region; a flip negates the horizontal axis.
    """
    scale_y = canvas / params.image_size[:, 0].to(torch.float64)  # [B]
    scale_x = canvas / params.image_size[:, 1].to(torch.float64)
    x0, w = params.left * scale_x, params.width * scale_x  # [C, B]
    y0, h = params.top * scale_y, params.height * scale_y
    steps = (torch.arange(size, dtype=torch.float64) * 2 + 1) / size - 1  # output centres in [-1, 1]
    sign = 1.0 - 2.0 * params.flip.to(torch.float64)
    gx = (2 * x0 + w)[..., None] / canvas - 1 + (sign * w)[..., None] / canvas * steps  # [C, B, size]
    gy = (2 * y0 + h)[..., None] / canvas - 1 + h[..., None] / canvas * steps
    n_crops, batch = gx.shape[:2]
    grid = torch.empty(batch, n_crops, size, size, 2)
    grid[..., 0] = gx.permute(1, 0, 2)[:, :, None, :]
    grid[..., 1] = gy.permute(1, 0, 2)[:, :, :, None]
    return grid.view(batch, n_crops * size, size, 2)


def _apply_colour_maps(pixels: Tensor, matrix: Tensor, offset: Tensor, low: list[float], high: list[float]) -> Tensor:
    """``clamp(matrix @ pixels + offset, low, high)`` per crop, written crop-major.

    ``pixels``: ``[C, B, 3, P]`` (any strides, e.g. a permuted view of the sampled crops);
    ``matrix [C * B, 3, 3]``, ``offset [C * B, 3]``, ``low``/``high``: per channel. Nine multiply-adds
    on channel planes read the strided input once and write the contiguous output directly,
    cheaper than a batched 3 x 3 matrix product (which needs contiguous copies) on the CPU.
    """
    n_crops, batch = pixels.shape[:2]
    out = torch.empty(n_crops, batch, 3, pixels.shape[-1], dtype=pixels.dtype, device=pixels.device)
    matrix = matrix.view(n_crops, batch, 3, 3, 1)
    offset = offset.view(n_crops, batch, 3, 1)
    for j in range(3):
        plane = out[:, :, j]
        torch.addcmul(offset[:, :, j], pixels[:, :, 0], matrix[:, :, j, 0], out=plane)
        plane.addcmul_(pixels[:, :, 1], matrix[:, :, j, 1]).addcmul_(pixels[:, :, 2], matrix[:, :, j, 2])
        plane.clamp_(low[j], high[j])
    return out


class KorniaMultiCrop:
    """DINOv2 multi-crop (Oquab et al. 2023, section 3; multi-crop: Caron et al. 2020, section 3.2) batched on the
    training device with kornia."""

    def __init__(self, params: KorniaMultiCropParams, ctx: BuildContext) -> None:
        self.params = params
        self.n_global = params.n_global
        self.n_local = params.n_local
        self.global_crop_size = params.global_crop_size
        self.local_crop_size = params.local_crop_size
        self.canvas_size = params.canvas_size or round(params.global_crop_size * 8 / 7)
        self._mean = torch.tensor(params.mean, dtype=torch.float32)
        self._std = torch.tensor(params.std, dtype=torch.float32)

    def prepare(self, image: Image.Image, sample_seed: int) -> dict[str, Tensor]:
        """Decode to RGB and resize to the canvas (no randomness: the crops are drawn on the device)."""
        image = image.convert("RGB")
        width, height = image.size
        if image.size != (self.canvas_size, self.canvas_size):
            image = image.resize((self.canvas_size, self.canvas_size), Image.Resampling.BILINEAR)
        pixels = torch.from_numpy(np.array(image, dtype=np.uint8)).permute(2, 0, 1)
        return {"image": pixels, "size": torch.tensor([height, width], dtype=torch.int64)}

    def draw_params(self, sample_seeds: Tensor, image_sizes: Tensor | None = None) -> CropParams:
        """Every crop's parameters; ``image_sizes [B, 2]`` defaults to the canvas."""
        if image_sizes is None:
            image_sizes = torch.full((len(sample_seeds), 2), self.canvas_size, dtype=torch.int64)
        return draw_crop_params(self.params, sample_seeds, image_sizes)

    def __call__(self, batch: dict[str, Tensor], sample_seeds: Tensor, device: torch.device | str) -> Crops:
        images = batch["image"].to(device, non_blocking=True)
        params = self.draw_params(sample_seeds, batch["size"].cpu())
        canvas = images.to(torch.float32)
        n_global = self.n_global
        global_crops = self._crop_group(canvas, params.crops(0, n_global), self.global_crop_size)
        local_crops = None
        if self.n_local:
            local_params = params.crops(n_global, n_global + self.n_local)
            local_crops = self._crop_group(canvas, local_params, self.local_crop_size)
        return Crops(global_crops, local_crops, n_global, self.n_local, batch_size=images.shape[0])

    def _crop_group(self, canvas: Tensor, params: CropParams, size: int) -> Tensor:
        """All crops of one size, crop-major ``[C * B, 3, size, size]``, normalised."""
        device = canvas.device
        batch, n_crops = canvas.shape[0], params.flip.shape[0]
        grid = _crop_grids(params, self.canvas_size, size).to(device, non_blocking=True)
        sampled = F.grid_sample(canvas, grid, mode="bilinear", padding_mode="border", align_corners=False)
        per_crop = sampled.view(batch, 3, n_crops, size * size).permute(2, 0, 1, 3)  # [C, B, 3, P], pixel 0..255

        def flat(t: Tensor) -> Tensor:
            return t.reshape(n_crops * batch, *t.shape[2:])

        jitter, order, gray = flat(params.jitter), flat(params.jitter_order), flat(params.grayscale)
        factors = flat(params.jitter_factors)
        mean, std = self._mean.to(device), self._std.to(device)
        if self.params.colour == "affine":
            channel_means = flat(per_crop.mean(dim=-1)) / 255
            matrix, offset = affine_colour_maps(channel_means, jitter, factors, order, gray, mean, std)
            low = [-m / s for m, s in zip(self.params.mean, self.params.std, strict=True)]
            high = [(1 - m) / s for m, s in zip(self.params.mean, self.params.std, strict=True)]
            out = _apply_colour_maps(per_crop, matrix / 255, offset, low, high)
            out = out.view(n_crops * batch, 3, size, size)
            threshold, reflect = (self.params.solarize_threshold - mean) / std, (1 - 2 * mean) / std
        else:
            out = per_crop.reshape(n_crops * batch, 3, size, size).div(255)
            sequential_colour(out, jitter, factors, order, gray)
            threshold, reflect = torch.full((3,), self.params.solarize_threshold), torch.ones(3)
        self._blur_(out, flat(params.blur), flat(params.blur_sigma), size)
        solarize_(out, torch.nonzero(flat(params.solarize)).squeeze(1), threshold, reflect)
        if self.params.colour == "sequential":
            out = kornia.enhance.normalize(out, mean, std)
        return out

    def _blur_(self, x: Tensor, blur: Tensor, sigma: Tensor, size: int) -> None:
        """Gaussian blur (reflect border, kornia's kernel) of the crops drawn for it, in place."""
        rows = torch.nonzero(blur).squeeze(1)
        kernel = blur_kernel_size(size, self.params.blur_kernel_fraction)
        gaussian_blur_rows_(x, rows, sigma[rows], kernel)
