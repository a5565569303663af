"""Multi-crop augmentation per image on the CPU with torchvision (the classic DINOv2 data path).

``prepare`` (loader workers) draws the image's crop parameters from its sample seed with
:func:`~sslkit_plugins.augmentations.draw.draw_crop_params` (the same draws as
``kornia_multicrop``) and applies the recipe with ``torchvision.transforms.v2.functional``:
``resized_crop`` (bilinear, antialiased), ``horizontal_flip``, the four colour-jitter
operations in the crop's drawn order, ``rgb_to_grayscale`` (PIL kernels, 8-bit), then
``gaussian_blur`` with the drawn sigma and ``solarize`` on the uint8 tensor. It returns uint8
tensors ``{"global": [n_global, 3, H, W], "local": [n_local, 3, h, w]}``; ``__call__`` only
moves them to the device, makes them crop-major and normalises.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torchvision.transforms.v2.functional as TF
from PIL import Image
from torch import Tensor

from sslkit.components import BuildContext, Crops
from sslkit_plugins.augmentations.draw import BRIGHTNESS, CONTRAST, HUE, SATURATION, CropParams, draw_crop_params
from sslkit_plugins.augmentations.params import MultiCropParams, blur_kernel_size

_OPERATIONS: dict[int, Callable[[Image.Image, float], Image.Image]] = {
    BRIGHTNESS: TF.adjust_brightness,
    CONTRAST: TF.adjust_contrast,
    SATURATION: TF.adjust_saturation,
    HUE: TF.adjust_hue,
}


class TorchvisionMultiCrop:
    """DINOv2 multi-crop (Oquab et al. 2023, section 3; multi-crop: Caron et al. 2020, section 3.2) per image in the
    loader workers with torchvision."""

    def __init__(self, params: MultiCropParams, ctx: BuildContext) -> None:
        self.params = params
        self.n_global = params.n_global
        self.n_local = params.n_local
        self.global_crop_size = params.global_crop_size
        self.local_crop_size = params.local_crop_size
        self._mean = torch.tensor(params.mean, dtype=torch.float32).view(1, 3, 1, 1) * 255
        self._std = torch.tensor(params.std, dtype=torch.float32).view(1, 3, 1, 1) * 255

    def draw_params(self, sample_seeds: Tensor, image_sizes: Tensor) -> CropParams:
        """Every crop's parameters for images of sizes ``image_sizes [B, 2]`` (H, W)."""
        return draw_crop_params(self.params, sample_seeds, image_sizes)

    def prepare(self, image: Image.Image, sample_seed: int) -> dict[str, Tensor]:
        image = image.convert("RGB")
        params = self.draw_params(torch.tensor([sample_seed]), torch.tensor([[image.height, image.width]]))
        crops = [self._crop(image, params, c) for c in range(self.params.n_crops)]
        out = {"global": torch.stack(crops[: self.n_global])}
        if self.n_local:
            out["local"] = torch.stack(crops[self.n_global :])
        return out

    def _crop(self, image: Image.Image, params: CropParams, c: int) -> Tensor:
        """Crop ``c`` of the single image described by ``params`` (batch of one), as uint8 [3, S, S]."""
        size = self.params.crop_size(c)
        x = TF.resized_crop(
            image,
            int(params.top[c, 0]),
            int(params.left[c, 0]),
            int(params.height[c, 0]),
            int(params.width[c, 0]),
            [size, size],
            antialias=True,
        )
        if params.flip[c, 0]:
            x = TF.horizontal_flip(x)
        if params.jitter[c, 0]:
            for op in params.jitter_order[c, 0].tolist():
                x = _OPERATIONS[op](x, float(params.jitter_factors[c, 0, op]))
        if params.grayscale[c, 0]:
            x = TF.rgb_to_grayscale(x, num_output_channels=3)
        pixels: Tensor = TF.pil_to_tensor(x)  # torchvision is untyped
        if params.blur[c, 0]:
            kernel = blur_kernel_size(size, self.params.blur_kernel_fraction)
            sigma = float(params.blur_sigma[c, 0])
            pixels = TF.gaussian_blur(pixels, [kernel, kernel], [sigma, sigma])
        if params.solarize[c, 0]:
            pixels = TF.solarize(pixels, threshold=round(self.params.solarize_threshold * 255))
        return pixels

    def __call__(self, batch: dict[str, Tensor], sample_seeds: Tensor, device: torch.device | str) -> Crops:
        global_crops = self._normalise(batch["global"], device)
        local_crops = self._normalise(batch["local"], device) if self.n_local else None
        return Crops(global_crops, local_crops, self.n_global, self.n_local, batch_size=batch["global"].shape[0])

    def _normalise(self, crops: Tensor, device: torch.device | str) -> Tensor:
        """``[B, C, 3, S, S]`` uint8 -> crop-major ``[C * B, 3, S, S]`` normalised float32."""
        crops = crops.to(device, non_blocking=True)
        batch, n_crops = crops.shape[:2]
        out = torch.empty(n_crops, batch, *crops.shape[2:], dtype=torch.float32, device=crops.device)
        out.copy_(crops.transpose(0, 1))
        out = out.flatten(0, 1)
        return out.sub_(self._mean.to(out.device)).div_(self._std.to(out.device))
