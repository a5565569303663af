"""Frozen-feature extraction for the evaluation protocols (DINO, Caron et al. 2021, section 4.1; DINOv2, Oquab et al.
2023, section 7).

The kNN and linear-probe protocols classify the *frozen* features of a backbone: the final-norm
CLS token, optionally concatenated with the average-pooled patch tokens. This module runs the
backbone over a labelled loader once and returns the features on the CPU in float32.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from contextlib import nullcontext
from typing import Literal

import torch
from torch import Tensor, nn

from sslkit.components import BackboneOutput

ProgressCallback = Callable[[int, int], object]
"""Called after every batch with ``(batches_done, images_in_this_batch)``; matches
:meth:`sslkit.monitoring.progress.Progress.update`."""


def _backbone_device(backbone: nn.Module) -> torch.device:
    for tensor in [*backbone.parameters(), *backbone.buffers()]:
        return tensor.device
    return torch.device("cpu")


def _pooled(out: BackboneOutput, with_patch_mean: bool) -> Tensor:
    if not with_patch_mean:
        return out.cls
    if out.patches is None:
        raise ValueError("with_patch_mean=True needs a backbone that returns patch tokens (patches is None)")
    return torch.cat([out.cls, out.patches.mean(dim=1)], dim=1)


def extract_features(
    backbone: nn.Module,
    loader: Iterable[tuple[Tensor, Tensor]],
    *,
    device: torch.device | str | None = None,
    precision: Literal["fp32", "bf16"] = "fp32",
    with_patch_mean: bool = False,
    progress: ProgressCallback | None = None,
) -> tuple[Tensor, Tensor]:
    """Features ``[N, D]`` (float32, CPU) and labels ``[N]`` (int64, CPU) of every sample of ``loader``.

    ``backbone`` follows :class:`sslkit.components.Backbone` (``forward(images)`` returns a
    :class:`~sslkit.components.BackboneOutput`); it must already live on ``device`` (``None``:
    the device of its parameters), where the images are moved. The features are the CLS token,
    or ``[CLS, mean of the patch tokens]`` (width ``2 D``) with ``with_patch_mean``.
    ``precision="bf16"`` runs the forward under bfloat16 autocast.

    The backbone runs in eval mode under ``torch.inference_mode``; the train/eval flag of every
    submodule is restored afterwards, even on error.
    """
    if precision not in ("fp32", "bf16"):
        raise ValueError(f"precision must be 'fp32' or 'bf16', got {precision!r}")
    device = torch.device(device) if device is not None else _backbone_device(backbone)
    modes = {module: module.training for module in backbone.modules()}
    autocast = torch.autocast(device_type=device.type, dtype=torch.bfloat16) if precision == "bf16" else nullcontext()
    features: list[Tensor] = []
    labels: list[Tensor] = []
    backbone.eval()
    try:
        with torch.inference_mode():
            for batch_index, (images, targets) in enumerate(loader, start=1):
                images = images.to(device, non_blocking=True)
                with autocast:
                    out = backbone(images)
                features.append(_pooled(out, with_patch_mean).float().cpu())
                labels.append(torch.as_tensor(targets).reshape(-1).to(dtype=torch.int64, device="cpu"))
                if progress is not None:
                    progress(batch_index, images.shape[0])
    finally:
        for module, training in modes.items():
            module.training = training
    if not features:
        raise ValueError("the loader yielded no batches")
    return torch.cat(features), torch.cat(labels)
