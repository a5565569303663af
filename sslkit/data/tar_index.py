"""The member index of an uncompressed tar archive, read once per process and archive.

Only safe regular files are indexed. Members are never extracted (images are read by offset),
but their names become class labels and error messages, so an archive built carelessly or
with hostile intent must not turn ``..`` into a class or read data a header only pretends to
have. The rules:

- a name is normalised by dropping empty and ``.`` components (``./a//b.jpg`` -> ``a/b.jpg``);
- a member is **skipped** when its name is absolute (``/etc/x.jpg``), has a ``..`` component,
  or is empty, and when it is not a regular file: symbolic or hard link, character or block
  device, FIFO, sparse file (directories are ignored silently);
- skipped members are reported in one warning per archive (the count, the first few with
  their reason); when they outnumber the indexed files the archive is refused
  (:class:`~sslkit.errors.SSLKitError`): it is not an image archive one should train on;
- a truncated or otherwise damaged archive (a header or member data cut off) is refused;
- a name that occurs more than once (appended archives, ``tar -r``) resolves to its last copy,
  as ``tar -x`` would extract it, with one warning per archive.
"""

from __future__ import annotations

import functools
import logging
import os
import tarfile

from sslkit.errors import SSLKitError

log = logging.getLogger("sslkit")

#: How many offending members a warning or error names before "... and N more".
SHOWN = 5


def open_archive(path: str) -> tarfile.TarFile:
    """Open ``path`` for reading as an uncompressed archive (members must be readable by offset)."""
    try:
        return tarfile.open(path, mode="r:")
    except tarfile.ReadError as exc:
        raise SSLKitError(f"{path} is not an uncompressed tar archive ({exc})") from None


def unsafe_reason(member: tarfile.TarInfo) -> str | None:
    """Why ``member`` may not be read as an image (``None``: a regular file with a safe name)."""
    if member.issym():
        return f"symbolic link to {member.linkname!r}"
    if member.islnk():
        return f"hard link to {member.linkname!r}"
    if member.ischr() or member.isblk():
        return "device file"
    if member.isfifo():
        return "FIFO"
    if member.issparse():
        return "sparse file (its data cannot be read by offset)"
    if not member.isfile():
        return f"unsupported member type {member.type!r}"
    if member.name.startswith("/"):
        return "absolute path"
    parts = member.name.split("/")
    if ".." in parts:
        return "'..' path component"
    if not normalise(member.name):
        return "empty name"
    return None


def normalise(name: str) -> str:
    """``name`` without empty and ``.`` components."""
    return "/".join(part for part in name.split("/") if part not in ("", "."))


def _listing(entries: list[str]) -> str:
    shown = "; ".join(entries[:SHOWN])
    return shown + (f"; ... and {len(entries) - SHOWN} more" if len(entries) > SHOWN else "")


def _trailing_data(archive: tarfile.TarFile, size: int) -> str | None:
    """A description of non-zero bytes after the last header tarfile could read (``None``: none)."""
    fileobj = archive.fileobj
    if fileobj is None:
        return None
    fileobj.seek(archive.offset)
    tail = fileobj.read(min(size - archive.offset, 2 * tarfile.RECORDSIZE))
    return f"{size - archive.offset} bytes of an unreadable header at offset {archive.offset}" if any(tail) else None


@functools.lru_cache(maxsize=4)
def _member_index(path: str, size: int, mtime_ns: int) -> dict[str, tuple[int, int]]:
    members: dict[str, tuple[int, int]] = {}
    skipped: list[str] = []
    duplicates: list[str] = []
    with open_archive(path) as archive:
        try:
            for member in archive:
                if member.isdir():
                    continue
                reason = unsafe_reason(member)
                if reason is not None:
                    skipped.append(f"{member.name!r} ({reason})")
                    continue
                name = normalise(member.name)
                if name in members:
                    duplicates.append(name)
                members[name] = (member.offset_data, member.size)
        except tarfile.TarError as exc:
            damage: str | None = f"{type(exc).__name__}: {exc}"
        else:  # tarfile ends quietly at a cut header: what follows the last member must be zero padding
            damage = _trailing_data(archive, size)
    if damage is not None:
        raise SSLKitError(f"tar archive {path} is damaged after {len(members) + len(skipped)} members "
                          f"({damage}); re-create or re-download it")
    if skipped and len(skipped) > len(members):
        hint = " (to archive the files links point to, create it with tar -h)" if "link" in skipped[0] else ""
        raise SSLKitError(f"tar archive {path}: {len(skipped)} of {len(skipped) + len(members)} members are not "
                          f"safe regular files{hint}: {_listing(skipped)}")
    if skipped:
        log.warning("tar archive %s: skipped %d member(s) that are not safe regular files: %s", path, len(skipped),
                    _listing(skipped))
    if duplicates:
        log.warning("tar archive %s: %d member name(s) occur more than once; the last copy of each is used: %s",
                    path, len(duplicates), _listing(duplicates))
    return members


def tar_members(path: str) -> dict[str, tuple[int, int]]:
    """Every safe regular file of the archive (see the module documentation): name -> (data offset, size).

    Cached while the file keeps its size and modification time, so that resolving a path and
    building the dataset (possibly twice, with different prefixes) reads the headers once.
    Treat the result as read-only.
    """
    stat = os.stat(path)
    return _member_index(os.path.abspath(path), stat.st_size, stat.st_mtime_ns)
