"""Dataset image_folder: labels from class folders, unlabelled flat folders, clear errors."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from sslkit.components import BuildContext, ImageDataset
from sslkit.errors import SSLKitError
from sslkit.registry import create
from sslkit_plugins.datasets.image_folder import ImageFolderDataset, ImageFolderParams


def write_image(path: Path, value: int, size: tuple[int, int] = (6, 4), mode: str = "RGB") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new(mode, size, value if mode == "L" else (value, 0, 255 - value)).save(path)


def test_class_folders_give_sorted_labels(tmp_path: Path) -> None:
    write_image(tmp_path / "zebra" / "a.png", 10)
    write_image(tmp_path / "ant" / "deep" / "b.JPG", 20)
    write_image(tmp_path / "ant" / "c.png", 30, mode="L")
    (tmp_path / "ant" / "notes.txt").write_text("not an image")
    ds = create("dataset", "image_folder", root=str(tmp_path))
    assert isinstance(ds, ImageDataset)
    assert ds.classes == ["ant", "zebra"] and len(ds) == 3
    labels = [ds[i][1] for i in range(3)]
    assert labels == [0, 0, 1]
    assert ds.describe(2) == str(tmp_path / "zebra" / "a.png")
    image, _ = ds[1]  # paths sort as ant/c.png, ant/deep/b.JPG, zebra/a.png
    assert image.mode == "RGB" and image.size == (6, 4)
    assert ds.describe(0).endswith("c.png") and ds.describe(1).endswith("b.JPG")
    assert np.array(ds[0][0])[0, 0].tolist() == [30, 30, 30]  # grayscale file converted to RGB


def test_flat_folder_is_unlabelled_and_loose_files_are_ignored_beside_classes(tmp_path: Path, caplog) -> None:
    flat = tmp_path / "flat"
    for i in range(3):
        write_image(flat / f"{i}.png", i)
    ds = ImageFolderDataset(ImageFolderParams(root=str(flat)), BuildContext())
    assert ds.classes == [] and [ds[i][1] for i in range(3)] == [-1, -1, -1]
    write_image(flat / "cls" / "x.png", 9)
    with caplog.at_level(logging.WARNING, logger="sslkit"):
        ds = ImageFolderDataset(ImageFolderParams(root=str(flat)), BuildContext())
    assert ds.classes == ["cls"] and len(ds) == 1 and "ignoring 3 image(s)" in caplog.text


def test_extensions_are_configurable(tmp_path: Path) -> None:
    write_image(tmp_path / "a" / "x.png", 1)
    write_image(tmp_path / "a" / "y.bmp", 2)
    ds = ImageFolderDataset(ImageFolderParams(root=str(tmp_path), extensions=(".BMP",)), BuildContext())
    assert len(ds) == 1 and ds.describe(0).endswith("y.bmp")


def test_missing_or_empty_root_says_what_was_found(tmp_path: Path) -> None:
    with pytest.raises(SSLKitError, match="does not exist"):
        ImageFolderDataset(ImageFolderParams(root=str(tmp_path / "nope")), BuildContext())
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "readme.md").write_text("hi")
    with pytest.raises(SSLKitError, match=r"no images .* \(1 files, e.g. docs/readme.md\)"):
        ImageFolderDataset(ImageFolderParams(root=str(tmp_path)), BuildContext())
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(SSLKitError, match="no files at all"):
        ImageFolderDataset(ImageFolderParams(root=str(empty)), BuildContext())
    with pytest.raises(SSLKitError, match="not a directory"):
        ImageFolderDataset(ImageFolderParams(root=str(tmp_path / "docs" / "readme.md")), BuildContext())
