"""Broken images inside archives and folders: corrupt members and decompression bombs count as bad
files (replaced, reported with archive and member), and a run of failures longer than the
replacement bound stops with a clear error (the same with and without loader workers)."""

from __future__ import annotations

import io
import re
import struct
import tarfile
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from sslkit.components import BuildContext
from sslkit.data import bad_files, build_train_loader
from sslkit.errors import SSLKitError
from sslkit_plugins.augmentations.kornia_multicrop import KorniaMultiCrop, KorniaMultiCropParams
from sslkit_plugins.datasets.image_folder import ImageFolderDataset, ImageFolderParams
from sslkit_plugins.datasets.tar import TarDataset, TarParams

AUGMENTATION = KorniaMultiCrop(KorniaMultiCropParams(global_crop_size=8, local_crop_size=8, n_local=0), BuildContext())


def png_bytes(side: int, value: int = 90) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (side, side), (value, value, value)).save(buffer, format="PNG")
    return buffer.getvalue()


def bomb_png(width: int = 50_000, height: int = 50_000) -> bytes:
    """A ~100-byte PNG whose header declares ``width x height`` pixels (IHDR rewritten, CRC fixed)."""
    data = bytearray(png_bytes(1))
    ihdr = data[12:29]  # chunk type + 13 bytes of IHDR data
    ihdr[4:12] = struct.pack(">II", width, height)
    data[12:29] = ihdr
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(ihdr)))
    return bytes(data)


def make_tar(path: Path, members: dict[str, bytes]) -> Path:
    with tarfile.open(path, "w") as archive:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return path


def batches(dataset, steps: int, max_bad_fraction: float = 0.5, workers: int = 0) -> list:
    loader = build_train_loader(dataset, AUGMENTATION, global_batch_size=4, rank=0, world_size=1, seed=0,
                                start_step=0, num_workers=workers, device="cpu", max_bad_fraction=max_bad_fraction)
    iterator = iter(loader)
    return [next(iterator) for _ in range(steps)]


@pytest.fixture
def broken_tar(tmp_path: Path) -> TarDataset:
    members = {f"{cls}/{i}.png": png_bytes(16, 20 * i + 100 * k) for k, cls in enumerate("ab") for i in range(4)}
    members["a/1.png"] = members["a/1.png"][:60]  # truncated inside the archive
    members["b/2.png"] = bomb_png()
    return TarDataset(TarParams(path=str(make_tar(tmp_path / "data.tar", members))), BuildContext())


def test_corrupt_members_and_bombs_in_a_tar_are_counted_as_bad_files(broken_tar: TarDataset) -> None:
    got = batches(broken_tar, 2)  # one epoch of 8 images
    used = [i for b in got for i in b.indices.tolist()]
    assert 1 not in used and 6 not in used and len(used) == 8
    reported = sorted(entry for b in got for entry in b.bad_files)
    archive = broken_tar.path
    assert len(reported) == 2
    assert reported[0].startswith(f"{archive}:a/1.png: ")
    assert reported[1].startswith(f"{archive}:b/2.png: DecompressionBombError: Image size (2500000000 pixels)")


def test_too_many_bad_members_stop_the_run_naming_the_archive(broken_tar: TarDataset) -> None:
    with pytest.raises(SSLKitError, match=r"1 of 5 images read failed .*max_bad_fraction = 10.00%") as error:
        batches(broken_tar, 2, max_bad_fraction=0.1)
    assert f"{broken_tar.path}:b/2.png: DecompressionBombError" in str(error.value)


def test_images_above_the_pixel_limit_are_refused_before_the_hard_limit(tmp_path: Path, monkeypatch) -> None:
    """PIL only warns between MAX_IMAGE_PIXELS and twice that; the loader refuses those images too."""
    for cls in "ab":
        (tmp_path / cls).mkdir()
        for i in range(2):
            (tmp_path / cls / f"{i}.png").write_bytes(png_bytes(8))
    (tmp_path / "a" / "1.png").write_bytes(png_bytes(40))  # 1,600 px: over 1,000, under 2,000
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)
    folder = ImageFolderDataset(ImageFolderParams(root=str(tmp_path)), BuildContext())
    got = batches(folder, 1)
    assert 1 not in got[0].indices.tolist()
    assert got[0].bad_files == [f"{tmp_path}/a/1.png: DecompressionBombWarning: Image size (1600 pixels) exceeds "
                                "limit of 1000 pixels, could be decompression bomb DOS attack."]


@pytest.mark.parametrize("workers", [0, 2])
def test_more_bad_files_in_a_row_than_the_bound_is_a_clear_error(tmp_path: Path, monkeypatch, workers: int) -> None:
    monkeypatch.setattr(bad_files, "MAX_REPLACEMENTS", 3)  # workers are forked: they see the patched bound
    members = {f"a/{i}.png": b"not a png" for i in range(6)}
    members.update({f"b/{i}.png": png_bytes(8) for i in range(2)})
    dataset = TarDataset(TarParams(path=str(make_tar(tmp_path / "bad.tar", members))), BuildContext())
    with pytest.raises(SSLKitError) as error:
        batches(dataset, 1, max_bad_fraction=1.0, workers=workers)
    message = str(error.value)
    archive = re.escape(dataset.path)
    assert re.match(rf"4 consecutive images failed to decode \(the replacement bound is 3\), from {archive}:a/\d.png "
                    rf"to {archive}:a/\d.png", message)
    assert "UnidentifiedImageError" in message and "Traceback" not in message and "worker" not in message


def test_a_symlink_loop_lists_each_image_once(tmp_path: Path, caplog) -> None:
    rng = np.random.default_rng(0)
    for cls in "ab":
        (tmp_path / cls).mkdir()
        Image.fromarray(rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)).save(tmp_path / cls / "0.png")
    (tmp_path / "a" / "loop").symlink_to(tmp_path / "a")
    (tmp_path / "b" / "up").symlink_to(tmp_path)
    folder = ImageFolderDataset(ImageFolderParams(root=str(tmp_path)), BuildContext())
    assert folder.paths == ["a/0.png", "b/0.png"] and folder.classes == ["a", "b"]
    assert "2 folder(s) reached a second time through symbolic links" in caplog.text
