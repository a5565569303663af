"""Datasets from command-line paths: directories, archives, and a split folder unwrapped."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

import pytest
from PIL import Image

from sslkit.data import dataset_from_path
from sslkit.errors import SSLKitError


def png(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (4, 4)).save(path)


def test_directory_of_class_folders(tmp_path: Path) -> None:
    png(tmp_path / "cat" / "1.png")
    png(tmp_path / "dog" / "1.png")
    ds = dataset_from_path(str(tmp_path))
    assert ds.classes == ["cat", "dog"]


def test_directory_holding_one_split_folder_is_unwrapped(tmp_path: Path) -> None:
    png(tmp_path / "train" / "cat" / "1.png")
    png(tmp_path / "train" / "dog" / "1.png")
    assert dataset_from_path(str(tmp_path)).classes == ["cat", "dog"]
    single_class = tmp_path / "single"
    png(single_class / "cat" / "1.png")  # one folder of images: a one-class dataset, not a wrapper
    assert dataset_from_path(str(single_class)).classes == ["cat"]


def test_archive_with_one_top_folder_uses_it_as_prefix(tmp_path: Path) -> None:
    path = tmp_path / "x.tar"
    with tarfile.open(path, "w") as archive:
        for name in ("val/cat/1.png", "val/dog/2.png"):
            data = io.BytesIO()
            Image.new("RGB", (4, 4)).save(data, format="PNG")
            info = tarfile.TarInfo(name)
            info.size = len(data.getvalue())
            archive.addfile(info, io.BytesIO(data.getvalue()))
    ds = dataset_from_path(str(path))
    assert ds.prefix == "val" and ds.classes == ["cat", "dog"]


def test_unusable_paths(tmp_path: Path) -> None:
    with pytest.raises(SSLKitError, match="does not exist"):
        dataset_from_path(str(tmp_path / "missing"))
    (tmp_path / "file.zip").write_text("x")
    with pytest.raises(SSLKitError, match=r"neither a directory nor a \.tar archive"):
        dataset_from_path(str(tmp_path / "file.zip"))
