"""The built-in step producers that run no model: the crops, the masks, and a model's backbone
module (for losses that run a model of their own, e.g. a Gram-anchoring teacher snapshot)."""

from __future__ import annotations

from torch import Tensor, nn

from sslkit.outputs import Output, StepView


def produce_images(request: Output, view: StepView) -> Tensor:
    """The normalised crops ``[C * B, 3, H, W]`` of ``global`` or ``local`` crops."""
    crops = view.crops
    images = crops.global_crops if request.crops == "global" else crops.local_crops
    if images is None:
        raise ValueError(f"{request.describe()}: the step has no local crops")
    return images


def produce_masks(request: Output, view: StepView) -> Tensor:
    """Bool ``[n_global * B, N]``: True where a global crop's patch is masked."""
    if view.masks is None:
        raise ValueError(f"{request.describe()}: the step has no masks")
    return view.masks


def produce_masked_crops(request: Output, view: StepView) -> Tensor:
    """Bool ``[n_global * B]``: the global crops the crop policy selected for masking."""
    if view.masked_crops is None:
        raise ValueError(f"{request.describe()}: the step has no masks")
    return view.masked_crops


def produce_backbone(request: Output, view: StepView) -> nn.Module:
    """The ``model``'s backbone module itself (read-only: never modify it)."""
    return view.module(request.model, "backbone")
