"""Patch-feature PCA images (the DINOv2 paper's figure 1 visualisation) for TensorBoard.

The patch tokens of a few images are projected on their first three principal components,
fitted jointly over all the images so that colours are comparable between them; each
component is min-max scaled to ``[0, 1]`` and shown as one RGB channel on the patch grid.
Semantically similar parts get similar colours when the features are good.
"""

from __future__ import annotations

import torch
from torch import Tensor


def patch_pca_rgb(patch_tokens: Tensor, grid: tuple[int, int]) -> Tensor:
    """RGB images ``[B, 3, h, w]`` (float32 in ``[0, 1]``, on the input's device) from
    ``patch_tokens [B, N, D]`` with ``N = h * w`` patches in row-major order.

    Channel ``c`` is the projection on the ``c``-th principal component (by decreasing
    variance) of the centred tokens of all ``B`` images, min-max scaled over all images. Each
    component's sign is fixed so that its largest-magnitude loading is positive (deterministic
    colours). Channels without a component (``D < 3``, or fewer than 3 non-negligible components: variance
    below ``1e-6`` of the first) are 0.
    """
    if patch_tokens.ndim != 3:
        raise ValueError(f"expected patch tokens [B, N, D], got shape {tuple(patch_tokens.shape)}")
    batch, n_patches, dim = patch_tokens.shape
    h, w = grid
    if h * w != n_patches:
        raise ValueError(f"grid {h}x{w} has {h * w} cells but there are {n_patches} patch tokens")
    tokens = patch_tokens.detach().float().reshape(batch * n_patches, dim)
    tokens = tokens - tokens.mean(dim=0)
    # Principal axes = eigenvectors of the D x D scatter matrix (eigh: ascending eigenvalues).
    eigenvalues, eigenvectors = torch.linalg.eigh(tokens.T @ tokens)
    n_components = min(3, dim)
    axes = eigenvectors[:, -n_components:].flip(dims=[1])  # [D, n_components], largest first
    strongest = axes.abs().argmax(dim=0)
    axes = axes * torch.sign(axes[strongest, torch.arange(n_components)])[None, :]
    projected = tokens @ axes  # [B * N, n_components]
    low, high = projected.min(dim=0).values, projected.max(dim=0).values
    spread = high - low
    variances = eigenvalues.flip(dims=[0])[:n_components]
    # Components below float32 round-off of the largest one are numerical noise, not signal.
    has_signal = variances > 1e-6 * variances[0].clamp_min(torch.finfo(torch.float32).tiny)
    scaled = torch.where(has_signal, (projected - low) / spread.clamp_min(1e-12), torch.zeros_like(projected))
    channels = torch.zeros(batch * n_patches, 3, device=patch_tokens.device)
    channels[:, :n_components] = scaled
    return channels.reshape(batch, h, w, 3).permute(0, 3, 1, 2).contiguous()
