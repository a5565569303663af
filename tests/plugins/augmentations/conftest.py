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


@pytest.fixture
def expected_ramp() -> Callable[..., np.ndarray]:
    """Red and green ``[2, S, S]`` of an S px resize of box (top, left, h, w), maybe flipped, of ``ramp(H, W)``."""

    def expect(top: int, left: int, h: int, w: int, flip: bool, size: int, height: int, width: int) -> np.ndarray:
        centres = (np.arange(size) + 0.5) / size
        xs = (left + centres * w) / width
        xs = xs[::-1] if flip else xs
        ys = (top + centres * h) / height
        return np.stack([np.broadcast_to(xs[None, :], (size, size)), np.broadcast_to(ys[:, None], (size, size))])

    return expect


@pytest.fixture
def constant_image() -> Callable[..., Image.Image]:
    """``constant_image(value, size=40)``: a uniform grey image."""

    def make(value: int, size: int = 40) -> Image.Image:
        return Image.fromarray(np.full((size, size, 3), value, dtype=np.uint8))

    return make
