"""WebDataset shards: samples grouped by key, and the small index files that spare reading headers.

**Samples.** A shard is an uncompressed tar archive whose members are grouped into samples by
key, WebDataset's convention: the key is the member path up to the first dot of its file name,
the rest is the extension (``a/b.seg.png`` -> key ``a/b``, extension ``seg.png``). A sample's
image is its member with the first of the image extensions it has (``jpg``, ``png``, ...), its
label the integer held by its first label member (``cls``, ``label``, ``txt``), -1 without one.
Keys without an image member are skipped. Samples are ordered by the image's position in the
archive. Only safe regular members count (the rules of :mod:`sslkit.data.tar_index`).

**Index files** (written by ``sslkit data shard``, optional): ``index.json`` beside the shards
holds per shard only its sample count, its byte size and its largest label, so a dataset of
N shards costs O(N) memory to open; ``<shard>.idx`` (8 magic bytes, the row count, then
little-endian int64 rows ``(image data offset, image size, label)``) holds one shard's samples
and is read only when a sample of that shard is, after checking that the ustar headers before
its first and last members declare the indexed sizes. A shard without a valid index entry (absent, different byte size,
other extensions) is scanned instead: its tar headers are read, then forgotten.
"""

from __future__ import annotations

import json
import os
import struct
import tarfile
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, BinaryIO

import numpy as np

from sslkit.data.tar_index import tar_members
from sslkit.errors import SSLKitError

IMAGE_EXTENSIONS = ("jpg", "jpeg", "png", "webp", "bmp", "tif", "tiff", "ppm", "pgm", "gif")
LABEL_EXTENSIONS = ("cls", "label", "txt")
INDEX_FILE = "index.json"
CLASSES_FILES = ("classes.txt", "classes.json")
FORMAT = "sslkit-shards/1"
#: The first bytes of a ``<shard>.idx`` file.
IDX_MAGIC = b"SSLKIDX1"


def split_key(name: str) -> tuple[str, str]:
    """``(key, extension)`` of a member path: the key ends at the first dot of the file name."""
    folder, _, base = name.rpartition("/")
    stem, _, ext = base.partition(".")
    return (f"{folder}/{stem}" if folder else stem), ext.lower()


def parse_label(data: bytes, where: str) -> int:
    """The integer a label member holds (surrounding whitespace allowed)."""
    try:
        return int(data.decode("utf-8").strip())
    except (UnicodeDecodeError, ValueError):
        raise SSLKitError(f"{where} holds {data[:40]!r}, not an integer class label; name the label extensions "
                          "with label_extensions (e.g. [cls]) or set label_extensions=[] for an unlabelled "
                          "dataset") from None


def scan_shard(path: str, image_extensions: Iterable[str], label_extensions: Iterable[str]) -> np.ndarray:
    """The samples of one shard read from its tar headers: int64 rows ``(offset, size, label)``."""
    image_exts = [e.lower().lstrip(".") for e in image_extensions]
    label_exts = [e.lower().lstrip(".") for e in label_extensions]
    groups: dict[str, dict[str, tuple[int, int]]] = {}
    for name, location in tar_members(path).items():
        key, ext = split_key(name)
        groups.setdefault(key, {})[ext] = location
    rows: list[tuple[int, int, int]] = []
    with open(path, "rb") as handle:
        for key, members in groups.items():
            image = next((members[e] for e in image_exts if e in members), None)
            if image is None:
                continue
            label = -1
            for ext in label_exts:
                if ext in members:
                    offset, size = members[ext]
                    handle.seek(offset)
                    label = parse_label(handle.read(size), f"{path}:{key}.{ext}")
                    break
            rows.append((image[0], image[1], label))
    rows.sort()
    return np.array(rows, dtype=np.int64).reshape(-1, 3)


def idx_path(shard: str) -> str:
    return shard + ".idx"


def write_shard_idx(shard: str, rows: np.ndarray) -> None:
    """Write ``<shard>.idx``: :data:`IDX_MAGIC`, the row count (int64) and the rows (little-endian int64)."""
    with open(idx_path(shard), "wb") as handle:
        handle.write(IDX_MAGIC + struct.pack("<q", len(rows)) + np.asarray(rows, dtype="<i8").tobytes())


def read_shard_idx(shard: str, samples: int, handle: BinaryIO) -> np.ndarray:
    """One shard's rows from its ``.idx`` file, checked against the counts index and the shard itself
    (open as ``handle``; its position is left anywhere)."""
    try:
        with open(idx_path(shard), "rb") as index:
            data = index.read()
    except OSError as exc:
        raise SSLKitError(f"shard index {idx_path(shard)} is unreadable ({exc}); re-create the shards with "
                          "'sslkit data shard' or delete index.json to scan the shards instead") from None
    head = len(IDX_MAGIC) + 8
    if (data[: len(IDX_MAGIC)] != IDX_MAGIC or len(data) != head + 24 * samples
            or struct.unpack("<q", data[len(IDX_MAGIC) : head])[0] != samples):
        raise SSLKitError(f"shard index {idx_path(shard)} is not an index of {samples} samples; re-create the "
                          "shards with 'sslkit data shard' or delete index.json to scan them instead")
    rows = np.frombuffer(data, dtype="<i8", offset=head).reshape(samples, 3).astype(np.int64)
    ends_inside = not samples or int((rows[:, 0] + rows[:, 1]).max()) <= os.fstat(handle.fileno()).st_size
    if not ends_inside or not _headers_match(handle, rows):
        raise SSLKitError(f"shard index {idx_path(shard)} does not match {shard} (written for another version of "
                          "the shard?); re-create the shards or delete index.json to scan them")
    return rows


def _headers_match(handle: BinaryIO, rows: np.ndarray) -> bool:
    """Whether the ustar headers before the first and last indexed members declare the indexed sizes."""
    for offset, size, _ in rows[[0, -1]] if len(rows) else []:
        handle.seek(int(offset) - tarfile.BLOCKSIZE)
        block = handle.read(tarfile.BLOCKSIZE)
        try:
            declared = int(block[124:136].strip(b"\0 ") or b"0", 8)  # the octal size field
        except ValueError:
            return False
        if block[257:262] != b"ustar" or declared != size:
            return False
    return True


@dataclass(frozen=True)
class ShardEntry:
    """What ``index.json`` says of one shard."""

    samples: int
    bytes: int
    max_label: int


def write_counts_index(folder: str, entries: dict[str, ShardEntry], image_extensions: Iterable[str],
                       label_extensions: Iterable[str]) -> str:
    """Write ``folder/index.json`` for shards named relative to ``folder``; returns its path."""
    index = {
        "format": FORMAT,
        "image_extensions": list(image_extensions),
        "label_extensions": list(label_extensions),
        "shards": {name: {"samples": e.samples, "bytes": e.bytes, "max_label": e.max_label}
                   for name, e in sorted(entries.items())},
    }
    path = os.path.join(folder, INDEX_FILE)
    with open(path, "w") as handle:
        json.dump(index, handle, indent=1)
        handle.write("\n")
    return path


def read_counts_index(folder: str, image_extensions: Iterable[str],
                      label_extensions: Iterable[str]) -> dict[str, ShardEntry]:
    """The entries of ``folder/index.json`` (empty when absent or written for other extensions)."""
    path = os.path.join(folder, INDEX_FILE)
    if not os.path.isfile(path):
        return {}
    try:
        with open(path) as handle:
            index: dict[str, Any] = json.load(handle)
        if index.get("format") != FORMAT:
            return {}
        if (index["image_extensions"] != [e.lower().lstrip(".") for e in image_extensions]
                or index["label_extensions"] != [e.lower().lstrip(".") for e in label_extensions]):
            return {}
        return {name: ShardEntry(int(e["samples"]), int(e["bytes"]), int(e["max_label"]))
                for name, e in index["shards"].items()}
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise SSLKitError(f"shard counts index {path} is malformed ({type(exc).__name__}: {exc}); delete it to "
                          "scan the shards instead") from None


def read_classes(folder: str) -> list[str] | None:
    """Class names from ``classes.txt`` (one per line) or ``classes.json`` (a list) in ``folder``."""
    for name in CLASSES_FILES:
        path = os.path.join(folder, name)
        if not os.path.isfile(path):
            continue
        with open(path) as handle:
            if name.endswith(".txt"):
                return [line.strip() for line in handle if line.strip()]
            classes = json.load(handle)
        if not isinstance(classes, list) or not all(isinstance(c, str) for c in classes):
            raise SSLKitError(f"{path} must hold a JSON list of class names")
        return classes
    return None


def index_shards(shards: list[str], image_extensions: Iterable[str] = IMAGE_EXTENSIONS,
                 label_extensions: Iterable[str] = LABEL_EXTENSIONS) -> dict[str, ShardEntry]:
    """Scan existing shards and write their ``.idx`` files and ``index.json`` entries (merged into an
    existing index of the same folder and extensions); returns the entries by shard path."""
    image_extensions, label_extensions = list(image_extensions), list(label_extensions)
    written: dict[str, ShardEntry] = {}
    by_folder: dict[str, dict[str, ShardEntry]] = {}
    for shard in shards:
        rows = scan_shard(shard, image_extensions, label_extensions)
        write_shard_idx(shard, rows)
        entry = ShardEntry(len(rows), os.path.getsize(shard), int(rows[:, 2].max()) if len(rows) else -1)
        folder, name = os.path.split(shard)
        if folder not in by_folder:
            by_folder[folder] = read_counts_index(folder, image_extensions, label_extensions)
        by_folder[folder][name] = written[shard] = entry
    for folder, entries in by_folder.items():
        write_counts_index(folder, entries, image_extensions, label_extensions)
    return written
