"""Dataset ``synthetic``: procedurally drawn shapes, the embedded default (no files, deterministic).

Each class is a shape family -- disk, ring, square, triangle, cross, square outline, and disks
filled with stripes, a checkerboard, dots or concentric rings. An image holds one large instance
(radius 28-42% of the side) with a random position and rotation, in a random, weakly tinted
tone over a background gradient between two other random tones, plus pixel noise. Every image
is then standardised to the same per-channel mean and spread, so that colour and brightness
carry no information about the class (a kNN on mean colour is at chance) and a randomly
initialised ViT's features -- mostly mean colour -- are near chance too; telling the classes
apart needs the silhouette and the texture, which self-supervised training on multi-crop views
learns. Colourful backgrounds were tried and rejected: DINO then learns each image's colours
(the cue shared by all its views) instead of its shape.

Image ``i`` has label ``i % num_classes`` and is generated on the fly from ``(seed, i)`` with a
few vectorised numpy operations on a coordinate grid (well under a millisecond at 32 px).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
from PIL import Image

from sslkit.components import BuildContext
from sslkit.params import param

Array = npt.NDArray[np.floating[Any]]  # float32 or float64: numpy promotes by the operands' dtypes


def _rect(u: Array, v: Array, half_u: float, half_v: float) -> Array:
    """Signed distance (pixels, positive inside) to an axis-aligned rectangle."""
    return np.minimum(half_u - np.abs(u), half_v - np.abs(v))


def _disk(u: Array, v: Array, r: float, rng: np.random.Generator) -> Array:
    return r - np.hypot(u, v)


def _ring(u: Array, v: Array, r: float, rng: np.random.Generator) -> Array:
    return 0.22 * r - np.abs(np.hypot(u, v) - 0.72 * r)


def _square(u: Array, v: Array, r: float, rng: np.random.Generator) -> Array:
    return _rect(u, v, 0.8 * r, 0.8 * r)


def _triangle(u: Array, v: Array, r: float, rng: np.random.Generator) -> Array:
    angles = np.array([np.pi / 2, np.pi * 7 / 6, np.pi * 11 / 6], dtype=np.float32)
    projections = u[..., None] * np.cos(angles) + v[..., None] * np.sin(angles)
    distance: Array = (0.55 * r - projections).min(axis=-1)
    return distance


def _cross(u: Array, v: Array, r: float, rng: np.random.Generator) -> Array:
    return np.maximum(_rect(u, v, r, 0.3 * r), _rect(u, v, 0.3 * r, r))


def _outline(u: Array, v: Array, r: float, rng: np.random.Generator) -> Array:
    return np.minimum(_rect(u, v, 0.85 * r, 0.85 * r), -_rect(u, v, 0.5 * r, 0.5 * r))


def _textured(pattern: Callable[[Array, Array, float], Array]) -> Callable[..., Array]:
    """A disk of radius ``1.1 r`` filled with a periodic pattern of random period."""

    def shape(u: Array, v: Array, r: float, rng: np.random.Generator) -> Array:
        period = max(3.0, float(rng.uniform(0.4, 0.55) * r))
        return np.minimum(1.1 * r - np.hypot(u, v), pattern(u, v, period))

    return shape


def _stripes(u: Array, v: Array, period: float) -> Array:
    wave: Array = np.sin(2 * np.pi * u / period)
    return wave * period / (2 * np.pi)


def _checker(u: Array, v: Array, period: float) -> Array:
    wave_u: Array = np.sin(2 * np.pi * u / period)
    wave_v: Array = np.sin(2 * np.pi * v / period)
    return wave_u * wave_v * period / 2


def _dots(u: Array, v: Array, period: float) -> Array:
    du = (u / period + 0.5) % 1 - 0.5
    dv = (v / period + 0.5) % 1 - 0.5
    to_centre: Array = np.hypot(du, dv)
    return (0.3 - to_centre) * period


def _rings(u: Array, v: Array, period: float) -> Array:
    wave: Array = np.sin(2 * np.pi * np.hypot(u, v) / period)
    return wave * period / (2 * np.pi)


SHAPES: dict[str, Callable[..., Array]] = {
    "disk": _disk,
    "ring": _ring,
    "square": _square,
    "triangle": _triangle,
    "cross": _cross,
    "square_outline": _outline,
    "stripes": _textured(_stripes),
    "checkerboard": _textured(_checker),
    "dots": _textured(_dots),
    "concentric": _textured(_rings),
}


@dataclass
class SyntheticParams:
    """Size and randomness of the generated dataset."""

    num_classes: int = param(10, f"Number of classes (shape families, at most {len(SHAPES)}).", ge=2, le=len(SHAPES))
    size: int = param(2000, "Number of images.", ge=1)
    image_size: int = param(32, "Side of the square images in pixels.", ge=8)
    seed: int = param(0, "Seed of the generator: the same seed gives the same images.", ge=0)


class SyntheticDataset:
    """Labelled shape images generated on the fly (see the module documentation)."""

    def __init__(self, params: SyntheticParams, ctx: BuildContext) -> None:
        self.params = params
        self.classes = list(SHAPES)[: params.num_classes]
        coords = np.arange(params.image_size, dtype=np.float32) + 0.5
        self._x, self._y = np.meshgrid(coords, coords)

    def __len__(self) -> int:
        return self.params.size

    def describe(self, index: int) -> str:
        return f"synthetic image {index} (seed {self.params.seed})"

    def __getitem__(self, index: int) -> tuple[Image.Image, int]:
        if not 0 <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} images")
        label = index % self.params.num_classes
        return Image.fromarray(self.render(index, label)), label

    def render(self, index: int, label: int) -> npt.NDArray[np.uint8]:
        """The uint8 ``[S, S, 3]`` pixels of image ``index`` of class ``label``."""
        rng = np.random.default_rng([self.params.seed, index])
        s = self.params.image_size
        x, y = self._x, self._y
        start, end = _tone(rng), _tone(rng)
        direction = rng.normal(size=2)
        direction /= np.linalg.norm(direction) + 1e-12
        ramp = np.clip(((x - s / 2) * direction[0] + (y - s / 2) * direction[1]) / s + 0.5, 0, 1)[..., None]
        image: Array = start + ramp * (end - start)
        radius = float(rng.uniform(0.28, 0.42) * s)
        cx, cy = (float(c) for c in rng.uniform(0.8 * radius, s - 0.8 * radius, 2))
        angle = rng.uniform(0, 2 * np.pi)
        cos, sin = float(np.cos(angle)), float(np.sin(angle))
        u = (x - cx) * cos + (y - cy) * sin
        v = (y - cy) * cos - (x - cx) * sin
        colour = _tone(rng)
        _paint(image, SHAPES[self.classes[label]](u, v, radius, rng), colour)
        image = (image - image.mean(axis=(0, 1))) / (image.std(axis=(0, 1)) + 0.05) * 0.2 + 0.5
        image += rng.standard_normal(image.shape, dtype=np.float32) * 0.04
        return (np.clip(image, 0, 1) * 255 + 0.5).astype(np.uint8)


def _tone(rng: np.random.Generator) -> Array:
    """A random grey level with a weak random tint (15% of a random colour's chroma)."""
    colour = rng.uniform(0.0, 1.0, 3).astype(np.float32)
    return np.mean(colour) + 0.15 * (colour - np.mean(colour))


def _paint(image: Array, distance: Array, colour: Array) -> None:
    """Blend ``colour`` into ``image`` (in place) where ``distance`` (pixels, positive inside) > 0,
    with a one-pixel antialiased edge."""
    alpha = np.clip(distance + 0.5, 0, 1)[..., None]
    image += alpha * (colour - image)
