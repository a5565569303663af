"""Images for TensorBoard: a batch's crops with the iBOT masks overlaid, and patch-feature PCA."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from sslkit.monitoring.pca_image import patch_pca_rgb

MAX_IMAGES = 16


def crops_grid(crops: Tensor, masks: Tensor | None, patch_size: int | None) -> Tensor:
    """Up to 16 crops ``[n, 3, H, W]`` in [0, 1] (min-max per image, undoing the normalisation),
    with masked patches tinted red."""
    images = crops[:MAX_IMAGES].detach().float().cpu()
    low = images.amin(dim=(1, 2, 3), keepdim=True)
    high = images.amax(dim=(1, 2, 3), keepdim=True)
    images = (images - low) / (high - low).clamp_min(1e-6)
    if masks is not None and patch_size:
        h, w = images.shape[-2] // patch_size, images.shape[-1] // patch_size
        grid = masks[:MAX_IMAGES].detach().cpu().float().reshape(-1, 1, h, w)
        overlay = F.interpolate(grid, scale_factor=patch_size, mode="nearest")
        red = torch.tensor([1.0, 0.0, 0.0]).view(1, 3, 1, 1)
        images = images * (1 - 0.5 * overlay) + red * 0.5 * overlay
    return images


def patch_pca_images(patches: Tensor, grid: tuple[int, int]) -> Tensor:
    """First three PCA components of the teacher's patch features on up to 4 crops, as RGB images."""
    return patch_pca_rgb(patches[:4].detach().float().cpu(), grid).float().clamp(0, 1)
