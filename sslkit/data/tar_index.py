"""The member index of an uncompressed tar archive, read once per process and archive."""

from __future__ import annotations

import functools
import os
import tarfile

from sslkit.errors import SSLKitError


def open_archive(path: str) -> tarfile.TarFile:
    """Open ``path`` for reading as an uncompressed archive (members must be readable by offset)."""
    try:
        return tarfile.open(path, mode="r:")
    except tarfile.ReadError as exc:
        raise SSLKitError(f"{path} is not an uncompressed tar archive ({exc})") from None


@functools.lru_cache(maxsize=4)
def _member_index(path: str, size: int, mtime_ns: int) -> dict[str, tuple[int, int]]:
    with open_archive(path) as archive:
        return {
            member.name.removeprefix("./"): (member.offset_data, member.size) for member in archive if member.isfile()
        }


def tar_members(path: str) -> dict[str, tuple[int, int]]:
    """Every regular file of the archive: name -> (data offset, size).

    Cached while the file keeps its size and modification time, so that resolving a path and
    building the dataset (possibly twice, with different prefixes) reads the headers once.
    Treat the result as read-only.
    """
    stat = os.stat(path)
    return _member_index(os.path.abspath(path), stat.st_size, stat.st_mtime_ns)
