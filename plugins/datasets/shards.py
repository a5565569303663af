"""Dataset ``shards``: many WebDataset-style tar shards, opened with O(number of shards) memory.

``path`` names the shards with brace ranges, lists and glob wildcards
(:mod:`sslkit.data.shard_patterns`); members are grouped into samples by key, an image member
and an optional integer label member each (:mod:`sslkit.data.shard_index`). At construction
only each shard's sample count is read (from ``index.json`` beside the shards, or by scanning
the headers of shards it does not cover), giving the dataset's index space: shard ``s`` holds
indices ``[start_s, start_s + count_s)`` in sorted path order. A sample's offset within its
shard is looked up when it is read: the shard's ``.idx`` file (or a header scan) is loaded into
a small per-process LRU of ``cache_shards`` shards, and each process (each loader worker) opens
its own file handles, also kept in an LRU, never inherited across ``fork``.

The dataset is map-style like every sslkit dataset, so the training order is the sampler's:
with ``window_shards: 0`` a uniform permutation of all samples per epoch, with
``window_shards: W`` the shard-window order of :mod:`sslkit.data.shard_order` (shards shuffled,
then samples shuffled within windows of W shards), which keeps each batch within a few shards.
Either way the order depends only on (seed, epoch) and the set of shard files.
"""

from __future__ import annotations

import io
import logging
import os
import tarfile
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, BinaryIO

import numpy as np
from PIL import Image

from sslkit.components import BuildContext
from sslkit.data.shard_index import (
    IMAGE_EXTENSIONS,
    LABEL_EXTENSIONS,
    ShardEntry,
    read_classes,
    read_counts_index,
    read_shard_idx,
    scan_shard,
)
from sslkit.data.shard_order import ShardWindowOrder
from sslkit.data.shard_patterns import expand_shards
from sslkit.errors import SSLKitError
from sslkit.params import param

log = logging.getLogger("sslkit")


@dataclass
class ShardsParams:
    """Which shards, how samples are recognised, the reading order and the per-process caches."""

    path: str = param(doc="Shard paths: brace ranges/lists and glob wildcards, e.g. "
                          "'shards/train-{000000..001023}.tar'; several patterns separated by spaces.")
    extensions: tuple[str, ...] = param(IMAGE_EXTENSIONS, "Image member extensions, in order of preference.")
    label_extensions: tuple[str, ...] = param(
        LABEL_EXTENSIONS, "Label member extensions (holding an integer), in order of preference; [] : unlabelled."
    )
    window_shards: int = param(
        0, "Training order: 0 = a uniform permutation of all samples per epoch; W > 0 = shards shuffled, then "
           "samples shuffled within windows of W shards (each batch reads few shards).", ge=0)
    cache_shards: int = param(16, "Shards whose sample offsets and file handle each process keeps (LRU).", ge=1)


class ShardsDataset:
    """The samples of many tar shards (see the module documentation); ``(RGB image, label or -1)``."""

    def __init__(self, params: ShardsParams, ctx: BuildContext) -> None:
        self.shards = expand_shards(params.path)
        self.params = params
        counts, max_labels, indexed = self._counts()
        self.indexed = indexed  # shards whose offsets come from their .idx file
        self.counts = np.array(counts, dtype=np.int64)
        self.ends = np.cumsum(self.counts)
        self.starts = self.ends - self.counts
        if not self.ends[-1]:
            raise SSLKitError(f"dataset shards: the {len(self.shards)} shard(s) of {params.path!r} hold no sample "
                              f"with an image member ({', '.join(params.extensions)})")
        max_label = max(max_labels)
        classes = read_classes(os.path.dirname(self.shards[0]))
        if classes is not None and max_label >= len(classes):
            raise SSLKitError(f"dataset shards: label {max_label} found but the classes file beside "
                              f"{self.shards[0]} lists {len(classes)} classes")
        self.classes = classes if classes is not None else [str(i) for i in range(max_label + 1)]
        self._records: OrderedDict[int, np.ndarray] = OrderedDict()
        self._handles: OrderedDict[int, BinaryIO] = OrderedDict()
        self._pid = os.getpid()

    def _counts(self) -> tuple[list[int], list[int], list[bool]]:
        """Sample count, largest label and whether a valid ``.idx`` exists, for each shard."""
        p = self.params
        indices: dict[str, dict[str, ShardEntry]] = {}
        counts, max_labels, indexed, scanned = [], [], [], []
        for shard in self.shards:
            folder, name = os.path.split(shard)
            if folder not in indices:
                indices[folder] = read_counts_index(folder, p.extensions, p.label_extensions)
            entry = indices[folder].get(name)
            if entry is not None and entry.bytes == os.path.getsize(shard) and os.path.isfile(shard + ".idx"):
                counts.append(entry.samples)
                max_labels.append(entry.max_label)
                indexed.append(True)
                continue
            rows = scan_shard(shard, p.extensions, p.label_extensions)
            counts.append(len(rows))
            max_labels.append(int(rows[:, 2].max()) if len(rows) else -1)
            indexed.append(False)
            scanned.append(name)
        if scanned:
            log.info("dataset shards: %d of %d shard(s) have no valid index (e.g. %s): counted by reading their "
                     "tar headers; 'sslkit data shard' writes index.json and .idx files", len(scanned),
                     len(self.shards), scanned[0])
        return counts, max_labels, indexed

    def __len__(self) -> int:
        return int(self.ends[-1])

    def locate(self, index: int) -> tuple[int, int]:
        """``(shard number, sample number within the shard)`` of dataset index ``index``."""
        if not 0 <= index < len(self):
            raise IndexError(f"index {index} outside the {len(self)} samples")
        shard = int(np.searchsorted(self.ends, index, side="right"))
        return shard, index - int(self.starts[shard])

    @property
    def cached_shards(self) -> list[int]:
        """The shards whose sample offsets this process holds, least recently used first."""
        return list(self._records)

    def _fork_check(self) -> None:
        if self._pid != os.getpid():  # a forked worker: the parent's handles share its file positions
            for handle in self._handles.values():
                handle.close()  # this process's copy of the descriptor only
            self._records, self._handles, self._pid = OrderedDict(), OrderedDict(), os.getpid()

    def _rows(self, shard: int) -> np.ndarray:
        if shard in self._records:
            self._records.move_to_end(shard)
            return self._records[shard]
        path, count = self.shards[shard], int(self.counts[shard])
        if self.indexed[shard]:
            rows = read_shard_idx(path, count, self._handle(shard))
        else:
            rows = scan_shard(path, self.params.extensions, self.params.label_extensions)
            if len(rows) != count:
                raise SSLKitError(f"dataset shards: {path} changed while training ({len(rows)} samples, {count} "
                                  "when the dataset was opened)")
        if not self.params.label_extensions:
            rows = rows.copy()
            rows[:, 2] = -1
        self._records[shard] = rows
        if len(self._records) > self.params.cache_shards:
            self._records.popitem(last=False)
        return rows

    def _handle(self, shard: int) -> BinaryIO:
        if shard in self._handles:
            self._handles.move_to_end(shard)
            return self._handles[shard]
        handle = open(self.shards[shard], "rb")  # noqa: SIM115 - kept open in the LRU, closed on eviction
        self._handles[shard] = handle
        if len(self._handles) > self.params.cache_shards:
            self._handles.popitem(last=False)[1].close()
        return handle

    def read_bytes(self, index: int) -> tuple[bytes, int]:
        """The image member's bytes and the label of sample ``index``."""
        self._fork_check()
        shard, j = self.locate(index)
        offset, size, label = (int(v) for v in self._rows(shard)[j])
        handle = self._handle(shard)
        handle.seek(offset)
        return handle.read(size), label

    def describe(self, index: int) -> str:
        """``SHARD:MEMBER`` of sample ``index`` (for error messages), read from the member's tar header."""
        self._fork_check()
        shard, j = self.locate(index)
        offset = int(self._rows(shard)[j][0])
        handle = self._handle(shard)
        handle.seek(offset - tarfile.BLOCKSIZE)
        try:
            member = tarfile.TarInfo.frombuf(handle.read(tarfile.BLOCKSIZE), "utf-8", "surrogateescape").name
        except tarfile.TarError:
            member = f"sample {j} at byte {offset}"
        return f"{self.shards[shard]}:{member}"

    def __getitem__(self, index: int) -> tuple[Image.Image, int]:
        data, label = self.read_bytes(index)
        with Image.open(io.BytesIO(data)) as image:
            return image.convert("RGB"), label

    def epoch_order(self, seed: int) -> ShardWindowOrder | None:
        """The training order (``None``: the sampler's uniform permutation; see ``window_shards``)."""
        if not self.params.window_shards:
            return None
        return ShardWindowOrder(seed, self.counts.tolist(), self.params.window_shards)

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_records"], state["_handles"] = OrderedDict(), OrderedDict()  # per process (spawned workers)
        return state
