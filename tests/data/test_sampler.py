"""The step-indexed data order: epochs are permutations, batches wrap, ranks slice, resume continues."""

from __future__ import annotations

import pytest
import torch

from sslkit import seeding
from sslkit.data.sampler import StepBatchSampler, epoch_permutation
from sslkit.errors import SSLKitError


def stream(size: int, batch: int, steps: int, **kw) -> list[int]:
    sampler = StepBatchSampler(size, global_batch_size=batch, rank=0, world_size=1, seed=5, **kw)
    return [i for step in range(steps) for i in sampler.indices(step)]


def test_each_epoch_is_a_permutation_and_batches_wrap_across_epochs() -> None:
    out = stream(10, 4, 10)  # 40 positions = 4 epochs of 10, batch 3 spans epochs 0 and 1
    for epoch in range(4):
        assert sorted(out[epoch * 10 : (epoch + 1) * 10]) == list(range(10))
        assert out[epoch * 10 : (epoch + 1) * 10] == epoch_permutation(5, epoch, 10).tolist()
    assert out[:10] != out[10:20]  # a fresh order each epoch


def test_ranks_take_contiguous_slices_of_the_global_batch() -> None:
    whole = StepBatchSampler(13, global_batch_size=6, rank=0, world_size=1, seed=1)
    parts = [StepBatchSampler(13, global_batch_size=6, rank=r, world_size=3, seed=1) for r in range(3)]
    for step in (0, 1, 2, 7):
        assert [item for p in parts for item in p.items(step)] == whole.items(step)
    assert [seed for _, seed, _ in whole.items(4)] == seeding.sample_seeds(1, 4, range(6)).tolist()


def test_resume_continues_the_stream_without_replay() -> None:
    fresh = iter(StepBatchSampler(7, global_batch_size=3, rank=0, world_size=1, seed=2))
    batches = [next(fresh) for _ in range(6)]
    resumed = iter(StepBatchSampler(7, global_batch_size=3, rank=0, world_size=1, seed=2, start_step=4))
    assert next(resumed) == batches[4] and next(resumed) == batches[5]
    assert all(step == s for s, batch in enumerate(batches) for _, _, step in batch)


def test_batch_larger_than_dataset_and_errors() -> None:
    out = stream(3, 8, 3)
    assert all(sorted(out[e * 3 : (e + 1) * 3]) == [0, 1, 2] for e in range(8))
    with pytest.raises(SSLKitError, match="not divisible by the world size 4"):
        StepBatchSampler(10, global_batch_size=6, rank=0, world_size=4, seed=0)
    with pytest.raises(SSLKitError, match="empty"):
        StepBatchSampler(0, global_batch_size=6, rank=0, world_size=1, seed=0)
    assert not torch.equal(epoch_permutation(0, 0, 50), epoch_permutation(1, 0, 50))
