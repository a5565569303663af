"""Hostile or broken tar archives: unsafe members are skipped with one warning (or the archive is
refused when they dominate), duplicates resolve to the last copy, damage is reported clearly."""

from __future__ import annotations

import io
import logging
import tarfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from sslkit.components import BuildContext
from sslkit.data.resolve import dataset_from_path
from sslkit.errors import SSLKitError
from sslkit_plugins.datasets.tar import TarDataset, TarParams


def jpeg_bytes(value: int) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (8, 8), (value, value, value)).save(buffer, format="JPEG", quality=95)
    return buffer.getvalue()


def file_info(name: str, data: bytes) -> tuple[tarfile.TarInfo, io.BytesIO]:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    return info, io.BytesIO(data)


def special_info(name: str, kind: bytes, linkname: str = "") -> tuple[tarfile.TarInfo, None]:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = linkname
    return info, None


def write_tar(path: Path, entries: list[tuple[tarfile.TarInfo, io.BytesIO | None]]) -> Path:
    with tarfile.open(path, "w", format=tarfile.GNU_FORMAT) as archive:
        for info, data in entries:
            archive.addfile(info, data)
    return path


def safe_entries(n: int = 4) -> list[tuple[tarfile.TarInfo, io.BytesIO]]:
    return [file_info(f"{cls}/{i}.jpg", jpeg_bytes(40 * k + 10 * i)) for k, cls in enumerate("ab") for i in range(n)]


HOSTILE = [
    ("../evil/x.jpg", "'..' path component"),
    ("a/../../y.jpg", "'..' path component"),
    ("/etc/z.jpg", "absolute path"),
]


def test_unsafe_names_and_special_members_are_skipped_with_one_warning(tmp_path: Path, caplog) -> None:
    entries = safe_entries()
    entries += [file_info(name, jpeg_bytes(7)) for name, _ in HOSTILE]
    entries += [special_info("a/link.jpg", tarfile.SYMTYPE, "/etc/passwd"),
                special_info("b/hard.jpg", tarfile.LNKTYPE, "a/0.jpg"),
                special_info("a/dev.jpg", tarfile.CHRTYPE),
                special_info("a/fifo.jpg", tarfile.FIFOTYPE)]
    path = write_tar(tmp_path / "hostile.tar", entries)
    with caplog.at_level(logging.WARNING, logger="sslkit"):
        ds = TarDataset(TarParams(path=str(path)), BuildContext())
    assert ds.classes == ["a", "b"], "'..', '' or 'etc' must never become a class"
    assert ds.names == [f"{cls}/{i}.jpg" for cls in "ab" for i in range(4)]
    warnings = [r.getMessage() for r in caplog.records if "not safe regular files" in r.getMessage()]
    assert len(warnings) == 1
    message = warnings[0]
    assert str(path) in message and "skipped 7 member(s)" in message
    for name, reason in HOSTILE[:2]:
        assert f"{name!r} ({reason})" in message
    assert "... and 2 more" in message  # 5 shown of 7


@pytest.mark.parametrize(
    ("entry", "reason"),
    [
        (file_info("../x.jpg", b"x"), "'..' path component"),
        (file_info("/etc/x.jpg", b"x"), "absolute path"),
        (special_info("a/l.jpg", tarfile.SYMTYPE, "../../x"), "symbolic link to '../../x'"),
        (special_info("a/h.jpg", tarfile.LNKTYPE, "a/0.jpg"), "hard link to 'a/0.jpg'"),
        (special_info("a/d.jpg", tarfile.BLKTYPE), "device file"),
        (special_info("a/f.jpg", tarfile.FIFOTYPE), "FIFO"),
    ],
)
def test_each_kind_of_unsafe_member_is_named_with_its_reason(tmp_path: Path, caplog, entry, reason) -> None:
    path = write_tar(tmp_path / "one.tar", [*safe_entries(2), entry])
    with caplog.at_level(logging.WARNING, logger="sslkit"):
        ds = TarDataset(TarParams(path=str(path)), BuildContext())
    assert len(ds) == 4
    assert f"{entry[0].name!r} ({reason})" in caplog.text


def test_an_archive_of_mostly_unsafe_members_is_refused(tmp_path: Path) -> None:
    entries = [*safe_entries(1)] + [special_info(f"a/{i}.jpg", tarfile.SYMTYPE, f"/data/{i}.jpg") for i in range(3)]
    path = write_tar(tmp_path / "links.tar", entries)
    with pytest.raises(SSLKitError) as error:
        TarDataset(TarParams(path=str(path)), BuildContext())
    message = str(error.value)
    assert str(path) in message and "3 of 5 members are not safe regular files" in message
    assert "tar -h" in message and "'a/0.jpg' (symbolic link to '/data/0.jpg')" in message


def test_duplicate_names_resolve_to_the_last_copy_with_a_warning(tmp_path: Path, caplog) -> None:
    entries = [file_info("a/0.jpg", jpeg_bytes(10)), file_info("b/0.jpg", jpeg_bytes(100)),
               file_info("./a//0.jpg", jpeg_bytes(200))]  # the same file after normalisation
    path = write_tar(tmp_path / "dup.tar", entries)
    with caplog.at_level(logging.WARNING, logger="sslkit"):
        ds = TarDataset(TarParams(path=str(path)), BuildContext())
    assert ds.names == ["a/0.jpg", "b/0.jpg"]
    assert abs(int(np.array(ds[0][0])[0, 0, 0]) - 200) <= 3
    assert "1 member name(s) occur more than once; the last copy of each is used: a/0.jpg" in caplog.text


def test_dot_dot_never_becomes_a_class_through_path_resolution(tmp_path: Path) -> None:
    entries = [file_info(f"train/{cls}/{i}.jpg", jpeg_bytes(i)) for cls in "ab" for i in range(2)]
    entries += [file_info("train/../../c/0.jpg", jpeg_bytes(1))]
    ds = dataset_from_path(str(write_tar(tmp_path / "split.tar", entries)))
    assert ds.classes == ["a", "b"] and ds.prefix == "train"


@pytest.mark.parametrize("where", ["data", "header"])
def test_a_truncated_archive_is_refused_with_its_path(tmp_path: Path, where: str) -> None:
    path = write_tar(tmp_path / "full.tar", safe_entries())
    offsets = TarDataset(TarParams(path=str(path)), BuildContext())._offsets
    end = offsets[-1][0] + 100 if where == "data" else offsets[2][0] - 200  # in the last member / third header
    cut = tmp_path / "cut.tar"
    cut.write_bytes(path.read_bytes()[:end])
    with pytest.raises(SSLKitError, match=r"tar archive .*cut.tar is damaged after \d members .*re-download"):
        TarDataset(TarParams(path=str(cut)), BuildContext())
