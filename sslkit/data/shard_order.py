"""The shard-window epoch order: shards shuffled, then samples shuffled within windows of shards.

For reading many shards with locality (each batch touches a few shards, not one sample of
every shard), epoch ``e`` of a sharded dataset may be ordered in two levels, both drawn from
(seed, e) only:

1. the shards are permuted (generator ``(seed, "shard_order", e)``) and cut into consecutive
   windows of ``window`` shards;
2. the samples of window ``k`` (all samples of its shards) are permuted (generator
   ``(seed, "shard_window", e, k)``), and the windows follow each other.

The result is a permutation of the dataset, a function of (seed, epoch) like
:func:`~sslkit.data.sampler.epoch_permutation`, so the sampler's guarantees hold unchanged
(same global batches for any number of processes and workers; exact resume). Memory: O(number
of shards) plus the samples of the two most recent windows; the full permutation is never built.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from sslkit import seeding


class ShardWindowOrder:
    """Positions of each epoch's shard-window order (see the module documentation)."""

    def __init__(self, seed: int, shard_sizes: Sequence[int], window: int) -> None:
        if window < 1:
            raise ValueError(f"window must be at least 1, got {window}")
        self.seed = seed
        self.window = window
        self.sizes = torch.tensor(list(shard_sizes), dtype=torch.int64)
        self.starts = torch.cumsum(self.sizes, 0) - self.sizes
        self._epochs: dict[int, tuple[Tensor, Tensor]] = {}
        self._windows: dict[tuple[int, int], Tensor] = {}

    def _layout(self, epoch: int) -> tuple[Tensor, Tensor]:
        """Epoch ``epoch``'s shard permutation and the cumulative sample counts at the end of each window."""
        if epoch not in self._epochs:
            for old in [e for e in self._epochs if e < epoch - 1]:
                del self._epochs[old]
            shards = torch.randperm(len(self.sizes), generator=seeding.generator(self.seed, "shard_order", epoch))
            sizes = self.sizes[shards]
            per_window = torch.stack([sizes[i : i + self.window].sum() for i in range(0, len(sizes), self.window)])
            self._epochs[epoch] = (shards, torch.cumsum(per_window, 0))
        return self._epochs[epoch]

    def window_indices(self, epoch: int, k: int) -> Tensor:
        """The dataset indices of window ``k`` of epoch ``epoch``, in their shuffled order."""
        if (epoch, k) not in self._windows:
            if len(self._windows) >= 2:
                del self._windows[next(iter(self._windows))]
            shards, _ = self._layout(epoch)
            members = shards[k * self.window : (k + 1) * self.window]
            indices = torch.cat([torch.arange(int(self.starts[s]), int(self.starts[s] + self.sizes[s]))
                                 for s in members.tolist()])
            order = torch.randperm(len(indices), generator=seeding.generator(self.seed, "shard_window", epoch, k))
            self._windows[(epoch, k)] = indices[order]
        return self._windows[(epoch, k)]

    def take(self, epoch: int, offset: int, count: int) -> list[int]:
        """Positions ``[offset, offset + count)`` of epoch ``epoch``'s order."""
        _, ends = self._layout(epoch)
        out: list[int] = []
        while count > 0:
            k = int(torch.searchsorted(ends, offset, right=True))
            first = int(ends[k - 1]) if k else 0
            window = self.window_indices(epoch, k)
            local = offset - first
            n = min(count, len(window) - local)
            out += window[local : local + n].tolist()
            offset += n
            count -= n
        return out
