"""The training data loader: dataset + augmentation ``prepare`` in worker processes, batched by step.

:func:`build_train_loader` returns an endless iterable of :class:`TrainBatch` for steps
``start_step, start_step + 1, ...``. The order and the sample seeds come from
:class:`~sslkit.data.sampler.StepBatchSampler` (independent of workers and world size);
workers (``torch.utils.data.DataLoader``, persistent, prefetching, pinned memory on CUDA)
decode images and run the augmentation's ``prepare``, replacing undecodable files
deterministically (:mod:`sslkit.data.bad_files`); a worker that runs out of replacements sends
the error with the batch and the main process raises it, so its message is the same with
and without workers (not wrapped in a worker traceback). Workers ignore SIGTERM and SIGUSR1:
Slurm (and ``kill`` of a process group) signals every process of a job, and a worker killed by
the signal would crash the main process before it could save its checkpoint. The device stage of the augmentation is the
engine's call: ``augmentation(batch.data, batch.sample_seeds, device)``.
"""

from __future__ import annotations

import atexit
import signal
import weakref
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor
from torch.utils.data import DataLoader, default_collate

from sslkit import seeding
from sslkit.components import Augmentation, ImageDataset
from sslkit.data.bad_files import BadFileTracker, ReplacementsExhausted, load_with_replacement
from sslkit.data.sampler import Item, StepBatchSampler
from sslkit.errors import SSLKitError


@dataclass
class TrainBatch:
    """One process's share of the global batch of one step.

    ``data``: the stacked outputs of ``augmentation.prepare`` (CPU, pinned on CUDA);
    ``sample_seeds``, ``labels`` (-1 when unlabelled), ``indices`` (dataset indices actually
    used): ``[B]`` int64; ``bad_files``: ``"<file>: <error>"`` for each image that failed to
    decode in this batch (each was replaced by the next image of the dataset).
    """

    step: int
    data: dict[str, Tensor]
    sample_seeds: Tensor
    labels: Tensor
    indices: Tensor
    bad_files: list[str] = field(default_factory=list)

    def pin_memory(self) -> TrainBatch:
        """Page-locked copies of the tensors (called by the DataLoader's pinning thread)."""
        return TrainBatch(
            self.step,
            {k: v.pin_memory() for k, v in self.data.items()},
            self.sample_seeds.pin_memory(),
            self.labels.pin_memory(),
            self.indices.pin_memory(),
            self.bad_files,
        )


class _PreparedItems(torch.utils.data.Dataset[dict[str, Any]]):
    """Map-style view used by the workers: item ``(index, seed, step)`` -> prepared sample."""

    def __init__(self, dataset: ImageDataset, augmentation: Augmentation) -> None:
        self.dataset = dataset
        self.augmentation = augmentation

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, item: Item) -> dict[str, Any]:
        index, sample_seed, step = item
        try:
            loaded = load_with_replacement(
                self.dataset, index, lambda image: self.augmentation.prepare(image, sample_seed)
            )
        except ReplacementsExhausted as exc:
            return {"error": str(exc)}
        return {
            "data": loaded.value,
            "label": loaded.label,
            "index": loaded.index,
            "seed": sample_seed,
            "step": step,
            "bad": loaded.bad,
        }


@dataclass
class _LoadFailure:
    """What a worker sends instead of a batch when an item ran out of replacements."""

    message: str


def _collate(samples: list[dict[str, Any]]) -> TrainBatch | _LoadFailure:
    failed = [s["error"] for s in samples if "error" in s]
    if failed:
        return _LoadFailure(failed[0])
    return TrainBatch(
        step=samples[0]["step"],
        data=default_collate([s["data"] for s in samples]),
        sample_seeds=torch.tensor([s["seed"] for s in samples], dtype=torch.int64),
        labels=torch.tensor([s["label"] for s in samples], dtype=torch.int64),
        indices=torch.tensor([s["index"] for s in samples], dtype=torch.int64),
        bad_files=[entry for s in samples for entry in s["bad"]],
    )


def _ignore_stop_signals(_worker_id: int) -> None:
    """Worker start-up: leave SIGTERM/SIGUSR1 to the main process, which stops at a checkpoint and
    then shuts the workers down (a worker whose main process died exits by itself)."""
    for sig in (signal.SIGTERM, signal.SIGUSR1):
        signal.signal(sig, signal.SIG_IGN)


#: DataLoader iterators whose workers may still run; see :func:`_kill_leaked_workers`.
_LIVE_ITERATORS: weakref.WeakSet[Any] = weakref.WeakSet()


def _shut_down(iterator: Any) -> None:
    """Stop the worker processes of a DataLoader iterator (nothing for a single-process one)."""
    shutdown = getattr(iterator, "_shutdown_workers", None)
    if shutdown is not None:
        shutdown()


@atexit.register
def _kill_leaked_workers() -> None:
    """At interpreter exit, kill the workers of iterators nobody closed (e.g. one kept alive by a
    stored exception). Workers ignore SIGTERM, so multiprocessing's own exit handler, which sends
    SIGTERM to daemonic children and then joins them, would wait for them forever. Registered
    after multiprocessing's handler, so it runs first."""
    for iterator in list(_LIVE_ITERATORS):
        for worker in getattr(iterator, "_workers", []):
            if worker.is_alive():
                worker.kill()


class TrainLoader:
    """Endless iterable of :class:`TrainBatch`; checks the bad-file fraction as batches arrive.

    Its workers are shut down when the iteration ends (an error, or the generator closed), and
    killed at interpreter exit if the iteration was never closed.
    """

    def __init__(self, loader: DataLoader[dict[str, Any]], tracker: BadFileTracker) -> None:
        self.loader = loader
        self.tracker = tracker

    def __iter__(self) -> Iterator[TrainBatch]:
        iterator = iter(self.loader)
        _LIVE_ITERATORS.add(iterator)
        try:
            for batch in iterator:
                if isinstance(batch, _LoadFailure):
                    raise SSLKitError(batch.message)
                self.tracker.update(len(batch.indices), batch.bad_files)
                yield batch
        finally:
            _shut_down(iterator)


def train_sampler(
    dataset: ImageDataset, *, global_batch_size: int, rank: int, world_size: int, seed: int, start_step: int
) -> StepBatchSampler:
    """The batch sampler of :func:`build_train_loader`: the dataset's own epoch order when it has an
    ``epoch_order(seed)`` method returning one (see :class:`~sslkit.data.sampler.EpochOrder`), a uniform
    permutation per epoch otherwise."""
    own_order = getattr(dataset, "epoch_order", None)
    return StepBatchSampler(
        len(dataset),
        global_batch_size=global_batch_size,
        rank=rank,
        world_size=world_size,
        seed=seed,
        start_step=start_step,
        order=own_order(seed) if callable(own_order) else None,
    )


def build_train_loader(
    dataset: ImageDataset,
    augmentation: Augmentation,
    *,
    global_batch_size: int,
    rank: int,
    world_size: int,
    seed: int,
    start_step: int,
    num_workers: int,
    device: torch.device | str,
    max_bad_fraction: float = 0.01,
    prefetch_factor: int = 2,
) -> TrainLoader:
    """The training batches of this process from ``start_step`` on (see the module documentation).

    Raises :class:`~sslkit.errors.SSLKitError` when ``global_batch_size`` is not divisible by
    ``world_size``, and while iterating when more than ``max_bad_fraction`` of the images read
    fail to decode.
    """
    sampler = train_sampler(
        dataset, global_batch_size=global_batch_size, rank=rank, world_size=world_size, seed=seed, start_step=start_step
    )
    workers = num_workers > 0
    loader = DataLoader(
        _PreparedItems(dataset, augmentation),
        batch_sampler=sampler,
        num_workers=num_workers,
        collate_fn=_collate,
        pin_memory=torch.device(device).type == "cuda",
        persistent_workers=workers,
        prefetch_factor=prefetch_factor if workers else None,
        worker_init_fn=_ignore_stop_signals,
        generator=seeding.generator(seed, "loader_workers"),  # leaves the global RNG untouched
    )
    return TrainLoader(loader, BadFileTracker(len(dataset), max_bad_fraction))
