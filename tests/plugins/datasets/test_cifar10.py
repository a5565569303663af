"""The tar dataset on the real CIFAR-10 training archive (skipped when the shared data is absent)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from sslkit.data import dataset_from_path

TRAIN_TAR = Path(__file__).resolve().parents[3].parent / "shared" / "data" / "cifar10" / "train.tar"

pytestmark = [
    pytest.mark.cifar10,
    pytest.mark.skipif(not TRAIN_TAR.is_file(), reason=f"{TRAIN_TAR} is absent"),
]


def test_cifar10_train_archive_resolves_to_its_ten_classes() -> None:
    ds = dataset_from_path(str(TRAIN_TAR))
    assert ds.prefix == "train"
    assert ds.classes == ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
    assert len(ds) == 50_000
    assert np.bincount(ds.labels).tolist() == [5000] * 10
    image, label = ds[len(ds) - 1]
    assert image.size == (32, 32) and image.mode == "RGB" and label == 9
    assert ds.describe(0).endswith("train.tar:train/airplane/0000.jpg")
    assert np.asarray(image).std() > 5  # a real photo, not a blank
