"""Dataset synthetic: deterministic, balanced, and not separable by colour alone."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from sslkit.components import BuildContext, ImageDataset
from sslkit.errors import RecipeError
from sslkit.registry import create
from sslkit_plugins.datasets.synthetic import SHAPES, SyntheticDataset, SyntheticParams


def pixels(ds: SyntheticDataset, n: int) -> tuple[np.ndarray, np.ndarray]:
    items = [ds[i] for i in range(n)]
    return np.stack([np.asarray(image, dtype=np.float32) / 255 for image, _ in items]), np.array([y for _, y in items])


def knn_accuracy(train: np.ndarray, train_y: np.ndarray, test: np.ndarray, test_y: np.ndarray, k: int = 10) -> float:
    distances = torch.cdist(torch.from_numpy(test), torch.from_numpy(train))
    neighbours = torch.from_numpy(train_y)[distances.topk(k, largest=False).indices]
    return (neighbours.mode(dim=1).values.numpy() == test_y).mean()


def test_registered_deterministic_and_balanced() -> None:
    ds = create("dataset", "synthetic", size=40, image_size=16, seed=3)
    assert isinstance(ds, ImageDataset) and len(ds) == 40 and ds.classes == list(SHAPES)
    image, label = ds[13]
    assert image.mode == "RGB" and image.size == (16, 16) and label == 3
    again = SyntheticDataset(SyntheticParams(size=40, image_size=16, seed=3), BuildContext())
    assert np.array_equal(np.asarray(again[13][0]), np.asarray(image))
    other = SyntheticDataset(SyntheticParams(size=40, image_size=16, seed=4), BuildContext())
    assert not np.array_equal(np.asarray(other[13][0]), np.asarray(image))
    assert np.bincount([ds[i][1] for i in range(40)]).tolist() == [4] * 10
    assert "13" in ds.describe(13)
    with pytest.raises(IndexError):
        ds[40]


def test_number_of_classes_is_bounded() -> None:
    assert SyntheticDataset(SyntheticParams(num_classes=3), BuildContext()).classes == ["disk", "ring", "square"]
    with pytest.raises(RecipeError, match="num_classes"):
        create("dataset", "synthetic", num_classes=len(SHAPES) + 1)


def test_classes_need_shape_not_colour() -> None:
    ds = SyntheticDataset(SyntheticParams(size=1200, image_size=24), BuildContext())
    images, labels = pixels(ds, 1200)
    train, test = slice(0, 1000), slice(1000, 1200)
    colour = images.mean(axis=(1, 2))  # mean RGB of each image
    assert knn_accuracy(colour[train], labels[train], colour[test], labels[test]) < 0.25  # chance is 0.1
    # A colour-, position- and rotation-invariant shape descriptor separates the classes: the radial
    # power spectrum of the silhouette (pixels brighter than the image's mean).
    gray = images.mean(axis=-1)
    masks = (gray > gray.mean(axis=(1, 2), keepdims=True)).astype(np.float32)
    spectrum = np.abs(np.fft.fft2(masks))
    radius = np.hypot(*np.meshgrid(np.fft.fftfreq(24), np.fft.fftfreq(24)))
    rings = np.minimum((radius * 24).astype(int), 12).ravel()
    shape = np.stack([np.bincount(rings, weights=s.ravel(), minlength=13) for s in spectrum])
    shape = shape / (shape[:, :1] + 1e-6)
    assert knn_accuracy(shape[train], labels[train], shape[test], labels[test]) > 0.3
