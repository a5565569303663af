"""Undecodable images: replaced by the next image, reported, counted, and fatal past the threshold."""

from __future__ import annotations

import io
import logging
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from sslkit.components import BuildContext
from sslkit.data import build_train_loader
from sslkit.data.bad_files import BadFileTracker
from sslkit.errors import SSLKitError
from sslkit_plugins.augmentations.kornia_multicrop import KorniaMultiCrop, KorniaMultiCropParams
from sslkit_plugins.datasets.image_folder import ImageFolderDataset, ImageFolderParams

AUGMENTATION = KorniaMultiCrop(KorniaMultiCropParams(global_crop_size=8, local_crop_size=8, n_local=0), BuildContext())


@pytest.fixture
def folder(tmp_path: Path) -> ImageFolderDataset:
    rng = np.random.default_rng(0)
    for cls in ("a", "b"):
        (tmp_path / cls).mkdir()
        for i in range(5):
            Image.fromarray(rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)).save(tmp_path / cls / f"{i}.jpg")
    buffer = io.BytesIO()
    Image.fromarray(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(buffer, format="JPEG")
    (tmp_path / "a" / "2.jpg").write_bytes(buffer.getvalue()[: len(buffer.getvalue()) // 2])  # truncated
    (tmp_path / "b" / "4.jpg").write_text("this is not a JPEG")
    return ImageFolderDataset(ImageFolderParams(root=str(tmp_path)), BuildContext())


def run(dataset: ImageFolderDataset, steps: int, max_bad_fraction: float, workers: int = 0) -> list:
    loader = build_train_loader(
        dataset,
        AUGMENTATION,
        global_batch_size=4,
        rank=0,
        world_size=1,
        seed=0,
        start_step=0,
        num_workers=workers,
        device="cpu",
        max_bad_fraction=max_bad_fraction,
    )
    iterator = iter(loader)
    return [next(iterator) for _ in range(steps)]


def test_bad_files_are_replaced_by_the_next_image_and_reported(folder, caplog) -> None:
    with caplog.at_level(logging.WARNING, logger="sslkit"):
        batches = run(folder, 10, max_bad_fraction=0.5)  # 40 images = 4 epochs
    used = [i for b in batches for i in b.indices.tolist()]
    assert all(len(b.indices) == 4 for b in batches)
    assert 2 not in used and 9 not in used  # a/2.jpg and b/4.jpg never delivered
    reported = [entry for b in batches for entry in b.bad_files]
    assert len(reported) == 8  # each bad file once per epoch
    assert any("a/2.jpg: OSError" in entry and "truncated" in entry for entry in reported)
    assert any("b/4.jpg: UnidentifiedImageError" in entry for entry in reported)
    assert used.count(3) == 8 and used.count(0) == 8  # the replacements (next index, wrapping)
    warnings = [r for r in caplog.records if "could not decode" in r.getMessage()]
    assert len(warnings) == 2  # each distinct file logged once


def test_replacement_does_not_depend_on_workers(folder) -> None:
    main, workers = run(folder, 3, 0.5), run(folder, 3, 0.5, workers=2)
    for a, b in zip(main, workers, strict=True):
        assert a.indices.tolist() == b.indices.tolist() and a.bad_files == b.bad_files


def test_too_many_bad_files_stop_the_run_with_the_counts(folder) -> None:
    with pytest.raises(SSLKitError) as error:
        run(folder, 10, max_bad_fraction=0.1)
    message = str(error.value)
    assert "failed to decode" in message and "data.max_bad_fraction = 10.00%" in message
    assert "2 distinct files" in message and "a/2.jpg" in message and "b/4.jpg" in message


def test_tracker_judges_large_datasets_over_at_least_a_thousand_reads() -> None:
    tracker = BadFileTracker(dataset_size=1_000_000, max_fraction=0.01)
    tracker.update(63, ["x.jpg: OSError: truncated"])  # 1 of 64 reads, but only 1 of >= 1000 judged
    for _ in range(8):
        tracker.update(64, [])
    with pytest.raises(SSLKitError, match=r"11 of 640 images read"):
        tracker.update(54, [f"{i}.jpg: OSError" for i in range(10)])
    small = BadFileTracker(dataset_size=10, max_fraction=0.0)
    with pytest.raises(SSLKitError):
        small.update(3, ["only.jpg: OSError"])  # a zero threshold tolerates nothing
