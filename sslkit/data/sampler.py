"""The training data order: one infinite stream of dataset indices, cut into global batches.

Epoch ``e`` is a permutation of the dataset drawn from ``(seed, e)``; the epochs are
concatenated into one stream, and the global batch of step ``s`` is positions
``[s * G, (s + 1) * G)`` of that stream (nothing dropped: batches wrap across epochs). Rank
``r`` of ``W`` takes the contiguous slice ``[r * B, (r + 1) * B)`` of the global batch with
``B = G / W``. Each image also gets its sample seed from (seed, step, position in the global
batch). So the images and their augmentations at a step do not depend on the number of
processes, and a run resumed at any step continues the exact stream without replaying it.

The order within an epoch is an :class:`EpochOrder`: by default :class:`PermutationOrder` (a
uniform permutation of the whole dataset); a dataset may supply its own through
:func:`sslkit.data.loader.train_sampler` (e.g. the ``shards`` dataset's shard-window order), as
long as it is a function of (seed, epoch) only.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Protocol

import torch
from torch import Tensor

from sslkit import seeding
from sslkit.errors import SSLKitError

#: One image to load: (dataset index, sample seed, step).
Item = tuple[int, int, int]


def epoch_permutation(seed: int, epoch: int, size: int) -> Tensor:
    """The dataset order of epoch ``epoch``: a permutation of ``range(size)``."""
    return torch.randperm(size, generator=seeding.generator(seed, "data_order", epoch))


class EpochOrder(Protocol):
    """The dataset order of each epoch, a permutation of ``range(dataset_size)`` drawn from (seed, epoch)."""

    def take(self, epoch: int, offset: int, count: int) -> list[int]:
        """Positions ``[offset, offset + count)`` of epoch ``epoch``'s order (within one epoch)."""
        ...


class PermutationOrder:
    """Each epoch a uniform permutation of the dataset (:func:`epoch_permutation`); keeps two epochs."""

    def __init__(self, seed: int, size: int) -> None:
        self.seed = seed
        self.size = size
        self._permutations: dict[int, Tensor] = {}

    def take(self, epoch: int, offset: int, count: int) -> list[int]:
        if epoch not in self._permutations:
            for old in [e for e in self._permutations if e < epoch - 1]:
                del self._permutations[old]
            self._permutations[epoch] = epoch_permutation(self.seed, epoch, self.size)
        return self._permutations[epoch][offset : offset + count].tolist()


class StepBatchSampler:
    """Yields, for steps ``start_step, start_step + 1, ...``, this rank's list of :data:`Item`."""

    def __init__(
        self,
        dataset_size: int,
        *,
        global_batch_size: int,
        rank: int,
        world_size: int,
        seed: int,
        start_step: int = 0,
        order: EpochOrder | None = None,
    ) -> None:
        if dataset_size < 1:
            raise SSLKitError("the training dataset is empty")
        if global_batch_size % world_size:
            raise SSLKitError(
                f"the global batch size {global_batch_size} is not divisible by the world size {world_size}"
            )
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} outside world size {world_size}")
        self.dataset_size = dataset_size
        self.global_batch_size = global_batch_size
        self.batch_size = global_batch_size // world_size
        self.rank = rank
        self.seed = seed
        self.start_step = start_step
        self.order: EpochOrder = order if order is not None else PermutationOrder(seed, dataset_size)

    def indices(self, step: int) -> list[int]:
        """Dataset indices of this rank's slice of the global batch of ``step``."""
        start = step * self.global_batch_size + self.rank * self.batch_size
        out: list[int] = []
        position = start
        while len(out) < self.batch_size:
            epoch, offset = divmod(position, self.dataset_size)
            take = min(self.batch_size - len(out), self.dataset_size - offset)
            out += self.order.take(epoch, offset, take)
            position += take
        return out

    def items(self, step: int) -> list[Item]:
        """This rank's items of ``step``: dataset index, sample seed and step of each image."""
        first = self.rank * self.batch_size
        seeds = seeding.sample_seeds(self.seed, step, list(range(first, first + self.batch_size))).tolist()
        return [(index, sample_seed, step) for index, sample_seed in zip(self.indices(step), seeds, strict=True)]

    def __iter__(self) -> Iterator[list[Item]]:
        step = self.start_step
        while True:
            yield self.items(step)
            step += 1
