"""Fixtures for the multi-crop tests: coordinate-encoded images and colour-free recipes."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from PIL import Image


@pytest.fixture
def no_colour() -> dict[str, Any]:
    """Recipe overrides with every colour operation off and an identity normalisation (crops = pixels / 255)."""
    return {
        "jitter_p": 0.0,
        "grayscale_p": 0.0,
        "global_blur_p": (0.0,),
        "local_blur_p": 0.0,
        "global_solarize_p": (0.0,),
        "mean": (0.0, 0.0, 0.0),
        "std": (1.0, 1.0, 1.0),
    }


@pytest.fixture
def ramp() -> Callable[[int, int], Image.Image]:
    """``ramp(H, W)``: red = (x + 0.5) / W, green = (y + 0.5) / H at pixel centres, blue = 0.5."""

    def make(height: int, width: int) -> Image.Image:
        pixels = np.zeros((height, width, 3))
        pixels[..., 0] = ((np.arange(width) + 0.5) / width)[None, :]
        pixels[..., 1] = ((np.arange(height) + 0.5) / height)[:, None]
        pixels[..., 2] = 0.5
        return Image.fromarray((pixels * 255 + 0.5).astype(np.uint8))

    return make


def _expected_ramp(top: int, left: int, h: int, w: int, flip: bool, size: int, height: int, width: int) -> np.ndarray:
    """Red and green ``[2, S, S]`` of an S px resize of box (top, left, h, w), maybe flipped, of ``ramp(H, W)``."""
    centres = (np.arange(size) + 0.5) / size
    xs = (left + centres * w) / width
    xs = xs[::-1] if flip else xs
    ys = (top + centres * h) / height
    return np.stack([np.broadcast_to(xs[None, :], (size, size)), np.broadcast_to(ys[:, None], (size, size))])


@pytest.fixture
def max_box_errors() -> Callable[..., list[float]]:
    """``max_box_errors(crops, params, height, width)``: for every crop of a batch of ``ramp(H, W)``
    images (2 global crops of 24 px, then local crops of 12 px), the largest difference between
    its red/green channels and the ramp resampled from the drawn box and flip."""

    def errors(crops: Any, params: Any, height: int, width: int) -> list[float]:
        n_crops, batch = params.top.shape
        found = []
        for c in range(n_crops):
            for b in range(batch):
                size = 24 if c < 2 else 12
                row = crops.global_crops[c * batch + b] if c < 2 else crops.local_crops[(c - 2) * batch + b]
                box = (int(params.top[c, b]), int(params.left[c, b]), int(params.height[c, b]), int(params.width[c, b]))
                expected = _expected_ramp(*box, bool(params.flip[c, b]), size, height, width)
                found.append(float(np.abs(row[:2].numpy() - expected).max()))
        return found

    return errors


@pytest.fixture
def constant_image() -> Callable[..., Image.Image]:
    """``constant_image(value, size=40)``: a uniform grey image."""

    def make(value: int, size: int = 40) -> Image.Image:
        return Image.fromarray(np.full((size, size, 3), value, dtype=np.uint8))

    return make
