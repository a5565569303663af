"""Crop selection and masks for one step, drawn for the global batch and sliced per process.

Both depend only on (run seed, step), so every process draws the same global selection and
keeps its own columns: the masks of image ``i`` of the global batch are the same whatever the
number of processes.
"""

from __future__ import annotations

import torch
from torch import Tensor

from sslkit import seeding
from sslkit.components import CropPolicy, Masker


def step_masks(policy: CropPolicy, masker: Masker, *, seed: int, step: int, n_global: int, global_batch: int,
               rank: int, batch_size: int, grid: tuple[int, int]) -> tuple[Tensor, Tensor]:
    """Return ``(masked_crops [n_global * B], masks [n_global * B, h * w])`` for this process, crop-major."""
    generator = seeding.generator(seed, step, "masks")
    selected = policy.select(n_global, global_batch, generator)  # [n_global, G]
    n_patches = grid[0] * grid[1]
    masks = torch.zeros(n_global, global_batch, n_patches, dtype=torch.bool)
    n_selected = int(selected.sum())
    if n_selected:
        masks[selected] = masker.generate(n_selected, grid, generator)
    columns = slice(rank * batch_size, (rank + 1) * batch_size)
    return selected[:, columns].reshape(-1), masks[:, columns].reshape(-1, n_patches)
