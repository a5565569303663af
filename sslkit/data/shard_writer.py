"""Write an image folder as WebDataset-style tar shards with the index files the ``shards`` dataset reads.

The images of the folder (listed like the ``image_folder`` dataset: class sub-folders give
labels 0..C-1 in sorted order, a flat folder is unlabelled, one wrapper folder such as
``train/<class>/`` is looked through as ``sslkit eval`` does) are put in a shuffled order drawn
from ``seed`` (so that a window of shards holds a mix of classes; ``seed=None`` keeps the sorted
order), then written ``shard_size`` per shard as ``<prefix>-NNNNNN.tar`` holding
``<key>.<ext>`` (the file's bytes, unchanged; ``ext`` its lower-case extension) and, when
labelled, ``<key>.cls`` (the label as decimal text), with ``key`` the sample's 9-digit position in
the written order. Beside the shards: ``<shard>.idx`` per shard, ``index.json`` (counts) and, when
labelled, ``classes.txt`` (see :mod:`sslkit.data.shard_index`). The output is byte-for-byte
deterministic: fixed order, ustar headers with zero times, owners and fixed modes.
"""

from __future__ import annotations

import io
import os
import tarfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol, cast

import numpy as np
import torch

from sslkit import seeding
from sslkit.data.resolve import dataset_from_path
from sslkit.data.shard_index import (
    CLASSES_FILES,
    IMAGE_EXTENSIONS,
    INDEX_FILE,
    LABEL_EXTENSIONS,
    ShardEntry,
    write_counts_index,
    write_shard_idx,
)
from sslkit.errors import SSLKitError

#: progress(files done, files in all, seconds since the start)
Progress = Callable[[int, int, float], None]


class _ImageFiles(Protocol):
    """What the writer uses of an ``image_folder`` dataset."""

    labels: list[int]
    classes: list[str]

    def __len__(self) -> int: ...

    def describe(self, index: int) -> str: ...


@dataclass(frozen=True)
class ShardSummary:
    """What :func:`write_shards` wrote."""

    shards: list[str]
    samples: int
    classes: list[str]
    pattern: str


def _member(name: str, data: bytes) -> tuple[tarfile.TarInfo, io.BytesIO]:
    info = tarfile.TarInfo(name)
    info.size, info.mode, info.mtime = len(data), 0o644, 0
    return info, io.BytesIO(data)


def _prepare_destination(dst: str, prefix: str, overwrite: bool) -> None:
    if os.path.exists(dst) and not os.path.isdir(dst):
        raise SSLKitError(f"destination {dst!r} is a file, not a directory")
    existing = sorted(os.listdir(dst)) if os.path.isdir(dst) else []
    if existing and not overwrite:
        shown = ", ".join(existing[:5]) + (" ..." if len(existing) > 5 else "")
        raise SSLKitError(f"destination {dst!r} is not empty ({shown}); choose an empty folder or pass --overwrite")
    for name in existing:  # --overwrite: remove what a previous run wrote, so no stale shard matches a glob
        if (name.startswith(f"{prefix}-") and name.endswith((".tar", ".tar.idx"))) or name in (INDEX_FILE,
                                                                                               *CLASSES_FILES):
            os.remove(os.path.join(dst, name))
    os.makedirs(dst, exist_ok=True)


def write_shards(src: str, dst: str, *, shard_size: int, prefix: str = "train", seed: int | None = 0,
                 overwrite: bool = False, progress: Progress | None = None) -> ShardSummary:
    """Write the images under ``src`` as shards in ``dst`` (see the module documentation)."""
    if shard_size < 1:
        raise SSLKitError(f"--shard-size must be at least 1, got {shard_size}")
    if not os.path.isdir(src):
        raise SSLKitError(f"source {src!r} {'is not a directory' if os.path.exists(src) else 'does not exist'}")
    # an image_folder dataset; a single wrapper folder (train/<class>/) is looked through
    source = cast(_ImageFiles, dataset_from_path(src))
    paths: list[str] = [source.describe(i) for i in range(len(source))]
    labels: list[int] = list(source.labels)
    order = list(range(len(paths))) if seed is None else \
        torch.randperm(len(paths), generator=seeding.generator(seed, "shard_write")).tolist()
    _prepare_destination(dst, prefix, overwrite)
    n_shards = (len(order) + shard_size - 1) // shard_size
    written: list[str] = []
    entries: dict[str, ShardEntry] = {}
    start = time.perf_counter()
    for s in range(n_shards):
        name = f"{prefix}-{s:06d}.tar"
        shard = os.path.join(dst, name)
        rows: list[tuple[int, int, int]] = []
        with tarfile.open(shard, "w", format=tarfile.USTAR_FORMAT) as archive:
            for position in range(s * shard_size, min((s + 1) * shard_size, len(order))):
                i = order[position]
                with open(paths[i], "rb") as handle:
                    data = handle.read()
                ext = os.path.splitext(paths[i])[1].lower().lstrip(".")
                archive.addfile(*_member(f"{position:09d}.{ext}", data))
                data_offset = archive.offset - -(-len(data) // tarfile.BLOCKSIZE) * tarfile.BLOCKSIZE
                rows.append((data_offset, len(data), labels[i]))
                if labels[i] >= 0:
                    archive.addfile(*_member(f"{position:09d}.cls", str(labels[i]).encode()))
                if progress is not None:
                    progress(position + 1, len(order), time.perf_counter() - start)
        write_shard_idx(shard, np.array(rows, dtype=np.int64).reshape(-1, 3))
        entries[name] = ShardEntry(len(rows), os.path.getsize(shard), max(r[2] for r in rows))
        written.append(shard)
    write_counts_index(dst, entries, IMAGE_EXTENSIONS, LABEL_EXTENSIONS)
    if source.classes:
        with open(os.path.join(dst, "classes.txt"), "w") as handle:
            handle.write("".join(f"{c}\n" for c in source.classes))
    last = f"{n_shards - 1:06d}"
    pattern = os.path.join(dst, f"{prefix}-{{000000..{last}}}.tar" if n_shards > 1 else f"{prefix}-{last}.tar")
    return ShardSummary(written, len(order), list(source.classes), pattern)
