"""The multi-crop recipe's parameters, shared by every multi-crop augmentation plugin.

Defaults are the DINOv2 values (Oquab et al. 2023, section 3; multi-crop: Caron et al. 2020, section 3.2): 2 global
crops of 224 px (scale
0.32-1.0), 8 local crops of 96 px (scale 0.05-0.32), aspect ratio 3/4-4/3, horizontal flip
p 0.5, colour jitter (brightness 0.4, contrast 0.4, saturation 0.2, hue 0.1) with p 0.8,
grayscale p 0.2, Gaussian blur (sigma 0.1-2.0) with p 1.0 on global crop 1, 0.1 on global
crop 2 and 0.5 on local crops, solarisation p 0.2 on global crop 2 only, ImageNet mean/std.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from sslkit.errors import SSLKitError
from sslkit.params import param

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass
class MultiCropParams:
    """Parameters of the DINOv2 multi-crop recipe (every probability is per crop)."""

    n_global: int = param(2, "Global crops per image (the teacher sees these; 2 in DINOv2).", ge=1)
    n_local: int = param(8, "Local crops per image (student only; 0 disables them).", ge=0)
    global_crop_size: int = param(224, "Side of the global crops in pixels.", ge=4)
    local_crop_size: int = param(96, "Side of the local crops in pixels.", ge=4)
    global_scale: tuple[float, float] = param((0.32, 1.0), "Range of a global crop's area as a fraction of the image.")
    local_scale: tuple[float, float] = param((0.05, 0.32), "Range of a local crop's area as a fraction of the image.")
    ratio: tuple[float, float] = param(
        (3 / 4, 4 / 3), "Range of the crops' aspect ratio (width / height), drawn log-uniformly."
    )
    flip_p: float = param(0.5, "Probability of a horizontal flip.", ge=0.0, le=1.0)
    jitter_p: float = param(
        0.8, "Probability of colour jitter (its four operations in a random order).", ge=0.0, le=1.0
    )
    brightness: float = param(0.4, "Brightness factor drawn uniformly in [max(0, 1 - x), 1 + x].", ge=0.0)
    contrast: float = param(0.4, "Contrast factor drawn uniformly in [max(0, 1 - x), 1 + x].", ge=0.0)
    saturation: float = param(0.2, "Saturation factor drawn uniformly in [max(0, 1 - x), 1 + x].", ge=0.0)
    hue: float = param(0.1, "Hue shift drawn uniformly in [-x, x] (fraction of a full turn).", ge=0.0, le=0.5)
    grayscale_p: float = param(0.2, "Probability of converting the crop to grayscale (after jitter).", ge=0.0, le=1.0)
    global_blur_p: tuple[float, ...] = param(
        (1.0, 0.1), "Gaussian-blur probability of global crop 1, 2, ... (crops past the list use its last entry)."
    )
    local_blur_p: float = param(0.5, "Gaussian-blur probability of each local crop.", ge=0.0, le=1.0)
    blur_sigma: tuple[float, float] = param((0.1, 2.0), "Range of the blur's standard deviation in pixels.")
    blur_kernel_fraction: float = param(
        0.04,
        "Blur kernel size as a fraction of the crop size, rounded up to an odd size >= 3 "
        "(9 px for 224 px crops, 5 px for 96 px, 3 px for 32 px).",
        gt=0.0,
        le=1.0,
    )
    global_solarize_p: tuple[float, ...] = param(
        (0.0, 0.2), "Solarisation probability of global crop 1, 2, ... (crops past the list use its last entry)."
    )
    local_solarize_p: float = param(0.0, "Solarisation probability of each local crop.", ge=0.0, le=1.0)
    solarize_threshold: float = param(
        128 / 255, "Solarisation inverts values >= this threshold (in [0, 1]).", ge=0.0, le=1.0
    )
    mean: tuple[float, float, float] = param(IMAGENET_MEAN, "Per-channel mean subtracted at normalisation.")
    std: tuple[float, float, float] = param(IMAGENET_STD, "Per-channel standard deviation of the normalisation.")

    def __post_init__(self) -> None:
        problems = []
        for name in ("global_scale", "local_scale", "blur_sigma", "ratio"):
            lo, hi = getattr(self, name)
            if not 0 < lo <= hi:
                problems.append(f"{name} must satisfy 0 < low <= high, got {[lo, hi]}")
        for name in ("global_scale", "local_scale"):
            if getattr(self, name)[1] > 1:
                problems.append(f"{name} must not exceed 1 (a crop is at most the whole image)")
        for name in ("global_blur_p", "global_solarize_p"):
            values = getattr(self, name)
            if not values or any(not 0 <= p <= 1 for p in values):
                problems.append(f"{name} must be a non-empty list of probabilities in [0, 1], got {list(values)}")
        if any(s <= 0 for s in self.std):
            problems.append(f"std must be positive, got {list(self.std)}")
        if problems:
            raise SSLKitError("invalid multi-crop parameters: " + "; ".join(problems))

    @property
    def n_crops(self) -> int:
        return self.n_global + self.n_local

    def crop_size(self, crop: int) -> int:
        """Output side of crop number ``crop`` (global crops first)."""
        return self.global_crop_size if crop < self.n_global else self.local_crop_size

    def blur_p(self, crop: int) -> float:
        if crop >= self.n_global:
            return self.local_blur_p
        return self.global_blur_p[min(crop, len(self.global_blur_p) - 1)]

    def solarize_p(self, crop: int) -> float:
        if crop >= self.n_global:
            return self.local_solarize_p
        return self.global_solarize_p[min(crop, len(self.global_solarize_p) - 1)]


def blur_kernel_size(crop_size: int, fraction: float) -> int:
    """The odd blur kernel size for a crop: ``fraction * crop_size`` rounded up to odd, at least 3."""
    size = max(3, math.ceil(fraction * crop_size - 1e-6))
    return size if size % 2 == 1 else size + 1
