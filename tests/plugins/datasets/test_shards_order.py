"""Dataset shards through the training loader: batches depend only on (seed, step, index in the global batch).

Both orders (uniform permutation, shard windows) must give the same batches with 0 or 2 loader
workers, the single-process batch when two ranks' slices are put together, and the same batches
after a restart at step k as in the uninterrupted run.
"""

from __future__ import annotations

import io

import pytest
import torch
from PIL import Image

from sslkit.components import BuildContext
from sslkit.data import TrainBatch, build_train_loader
from sslkit.data.loader import train_sampler
from sslkit.data.shard_order import ShardWindowOrder
from sslkit.data.shard_writer import write_shards
from sslkit.registry import create
from sslkit_plugins.augmentations.kornia_multicrop import KorniaMultiCrop, KorniaMultiCropParams

AUGMENTATION = KorniaMultiCrop(KorniaMultiCropParams(global_crop_size=16, local_crop_size=8, n_local=2), BuildContext())


@pytest.fixture(scope="module")
def shards(tmp_path_factory: pytest.TempPathFactory) -> str:
    """30 labelled 16x16 PNG images in 6 shards of 5; returns the shard pattern."""
    root = tmp_path_factory.mktemp("shard_order")
    for i in range(30):
        folder = root / "images" / f"c{i % 3}"
        folder.mkdir(parents=True, exist_ok=True)
        buffer = io.BytesIO()
        Image.new("RGB", (16, 16), (8 * i, 255 - 8 * i, i)).save(buffer, format="PNG")
        (folder / f"{i:02d}.png").write_bytes(buffer.getvalue())
    return write_shards(str(root / "images"), str(root / "shards"), shard_size=5).pattern


def batches(pattern: str, steps: int, *, window: int, workers: int = 0, rank: int = 0, world: int = 1,
            start: int = 0) -> list[TrainBatch]:
    dataset = create("dataset", "shards", path=pattern, window_shards=window, cache_shards=2)
    loader = build_train_loader(dataset, AUGMENTATION, global_batch_size=8, rank=rank, world_size=world, seed=7,
                                start_step=start, num_workers=workers, device="cpu")
    iterator = iter(loader)
    out = [next(iterator) for _ in range(steps)]
    iterator.close()
    return out


def same(a: TrainBatch, b: TrainBatch) -> bool:
    return (a.step == b.step and torch.equal(a.indices, b.indices) and torch.equal(a.sample_seeds, b.sample_seeds)
            and torch.equal(a.labels, b.labels) and all(torch.equal(a.data[k], b.data[k]) for k in a.data))


def test_window_order_is_a_permutation_per_epoch_and_keeps_batches_in_few_shards() -> None:
    order = ShardWindowOrder(3, [5, 0, 7, 5, 6, 5], window=2)
    for epoch in range(3):
        whole = order.take(epoch, 0, 28)
        assert sorted(whole) == list(range(28))
        assert order.take(epoch, 9, 11) == whole[9:20]  # any slice is the slice of the whole
    assert order.take(0, 0, 28) != order.take(1, 0, 28)
    starts = torch.tensor([0, 5, 5, 12, 17, 23])
    first_window = order.take(0, 0, len(order.window_indices(0, 0)))
    assert len({int(torch.searchsorted(starts, i, right=True)) for i in first_window}) <= 2


@pytest.mark.parametrize("window", [0, 2])
def test_restart_at_step_k_gives_the_batches_of_the_uninterrupted_run(shards: str, window: int) -> None:
    fresh = batches(shards, 9, window=window)  # 72 images: more than two epochs of 30
    resumed = batches(shards, 3, window=window, start=6)
    assert all(same(a, b) for a, b in zip(fresh[6:], resumed, strict=True))
    seen = torch.cat([b.indices for b in fresh])
    assert sorted(seen[:30].tolist()) == list(range(30)) and sorted(seen[30:60].tolist()) == list(range(30))


@pytest.mark.parametrize("window", [0, 2])
def test_two_ranks_together_give_the_single_process_batches(shards: str, window: int) -> None:
    whole = batches(shards, 4, window=window)
    ranks = [batches(shards, 4, window=window, rank=r, world=2) for r in range(2)]
    for step in range(4):
        parts = [ranks[r][step] for r in range(2)]
        assert torch.equal(torch.cat([p.indices for p in parts]), whole[step].indices)
        assert torch.equal(torch.cat([p.sample_seeds for p in parts]), whole[step].sample_seeds)
        assert torch.equal(torch.cat([p.labels for p in parts]), whole[step].labels)
        assert torch.equal(torch.cat([p.data["image"] for p in parts]), whole[step].data["image"])


def test_the_loader_uses_the_datasets_window_order(shards: str) -> None:
    dataset = create("dataset", "shards", path=shards, window_shards=2)
    sampler = train_sampler(dataset, global_batch_size=8, rank=0, world_size=1, seed=7, start_step=0)
    assert isinstance(sampler.order, ShardWindowOrder)
    for step in range(3):  # each batch of 8 lies in at most one window change: at most 4 shards of 5 images
        assert len({dataset.locate(i)[0] for i in sampler.indices(step)}) <= 4


def test_two_workers_read_the_same_batches_as_the_main_process(shards: str) -> None:
    main, workers = batches(shards, 4, window=2), batches(shards, 4, window=2, workers=2)
    assert all(same(a, b) for a, b in zip(main, workers, strict=True))
