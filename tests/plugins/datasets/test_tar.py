"""Dataset tar: an ImageFolder tree read by offset from an archive, safe with loader workers."""

from __future__ import annotations

import io
import pickle
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from sslkit.components import BuildContext
from sslkit.errors import SSLKitError
from sslkit.registry import create
from sslkit_plugins.datasets.tar import TarDataset, TarParams


def jpeg_bytes(value: int) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (8, 8), (value, value, value)).save(buffer, format="JPEG", quality=95)
    return buffer.getvalue()


def make_tar(path: Path, members: dict[str, bytes], mode: str = "w") -> Path:
    with tarfile.open(path, mode) as archive:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return path


@pytest.fixture
def split_tar(tmp_path: Path) -> Path:
    members = {
        f"train/{cls}/{i}.jpg": jpeg_bytes(40 * k + 10 * i) for k, cls in enumerate(["cat", "dog"]) for i in range(3)
    }
    members["train/README.txt"] = b"not an image"
    members["test/cat/0.jpg"] = jpeg_bytes(200)
    return make_tar(tmp_path / "data.tar", members)


def test_prefix_selects_the_split_and_labels_come_from_class_folders(split_tar: Path) -> None:
    ds = create("dataset", "tar", path=str(split_tar), prefix="train")
    assert ds.classes == ["cat", "dog"] and len(ds) == 6
    assert [ds[i][1] for i in range(6)] == [0, 0, 0, 1, 1, 1]
    image, _ = ds[4]
    assert image.mode == "RGB" and abs(int(np.array(image)[0, 0, 0]) - 50) <= 3
    assert ds.describe(4) == f"{split_tar}:train/dog/1.jpg"


def test_without_prefix_the_top_folders_are_the_classes(split_tar: Path) -> None:
    ds = TarDataset(TarParams(path=str(split_tar)), BuildContext())
    assert ds.classes == ["test", "train"] and len(ds) == 7


def test_flat_archive_is_unlabelled(tmp_path: Path) -> None:
    path = make_tar(tmp_path / "flat.tar", {f"./{i}.jpg": jpeg_bytes(i) for i in range(4)})
    ds = TarDataset(TarParams(path=str(path)), BuildContext())
    assert ds.classes == [] and [ds[i][1] for i in range(4)] == [-1] * 4


def test_errors_name_what_exists(split_tar: Path, tmp_path: Path) -> None:
    with pytest.raises(SSLKitError, match="top-level entries: test, train"):
        TarDataset(TarParams(path=str(split_tar), prefix="val"), BuildContext())
    with pytest.raises(SSLKitError, match="does not exist"):
        TarDataset(TarParams(path=str(tmp_path / "missing.tar")), BuildContext())
    compressed = make_tar(tmp_path / "data.tar.gz", {"a/0.jpg": jpeg_bytes(1)}, mode="w:gz")
    with pytest.raises(SSLKitError, match="not an uncompressed tar archive"):
        TarDataset(TarParams(path=str(compressed)), BuildContext())
    no_images = make_tar(tmp_path / "text.tar", {"a/notes.txt": b"x"})
    with pytest.raises(SSLKitError, match=r"no images .*a/notes.txt"):
        TarDataset(TarParams(path=str(no_images)), BuildContext())


def test_reads_are_identical_in_loader_workers_and_after_pickling(split_tar: Path) -> None:
    ds = TarDataset(TarParams(path=str(split_tar), prefix="train"), BuildContext())
    direct = [np.array(ds[i][0]) for i in range(len(ds))]
    clone = pickle.loads(pickle.dumps(ds))  # what a spawned worker receives: no open handle
    assert all(np.array_equal(np.array(clone[i][0]), direct[i]) for i in range(len(ds)))

    class Pixels(torch.utils.data.Dataset):
        def __len__(self) -> int:
            return len(ds)

        def __getitem__(self, i: int) -> torch.Tensor:
            return torch.from_numpy(np.array(ds[i][0]))

    loader = torch.utils.data.DataLoader(Pixels(), batch_size=2, num_workers=2)
    loaded = torch.cat(list(loader))
    assert torch.equal(loaded, torch.from_numpy(np.stack(direct)))
