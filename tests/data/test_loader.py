"""The training loader: the same batches for any number of workers or processes, and on resume."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch

from sslkit.components import BuildContext
from sslkit.data import TrainBatch, build_train_loader
from sslkit.errors import SSLKitError
from sslkit_plugins.augmentations.kornia_multicrop import KorniaMultiCrop, KorniaMultiCropParams
from sslkit_plugins.datasets.synthetic import SyntheticDataset, SyntheticParams

DATASET = SyntheticDataset(SyntheticParams(size=30, image_size=16), BuildContext())
AUGMENTATION = KorniaMultiCrop(KorniaMultiCropParams(global_crop_size=16, local_crop_size=8, n_local=2), BuildContext())


def batches(steps: int, *, workers: int = 0, rank: int = 0, world: int = 1, start: int = 0) -> list[TrainBatch]:
    loader = build_train_loader(
        DATASET,
        AUGMENTATION,
        global_batch_size=8,
        rank=rank,
        world_size=world,
        seed=7,
        start_step=start,
        num_workers=workers,
        device="cpu",
    )
    iterator = iter(loader)
    return [next(iterator) for _ in range(steps)]


def same(a: TrainBatch, b: TrainBatch) -> bool:
    return (
        a.step == b.step
        and torch.equal(a.indices, b.indices)
        and torch.equal(a.sample_seeds, b.sample_seeds)
        and torch.equal(a.labels, b.labels)
        and all(torch.equal(a.data[k], b.data[k]) for k in a.data)
    )


def test_batches_carry_steps_labels_and_prepared_images() -> None:
    first = batches(5)
    assert [b.step for b in first] == [0, 1, 2, 3, 4]
    b = first[0]
    assert b.data["image"].shape == (8, 3, 18, 18) and b.data["size"].tolist() == [[16, 16]] * 8
    assert torch.equal(b.labels, b.indices % 10) and b.bad_files == []
    seen = torch.cat([x.indices for x in first])  # 40 images = one epoch of 30 + 10
    assert sorted(seen[:30].tolist()) == list(range(30))


def test_two_workers_give_the_same_batches_as_the_main_process() -> None:
    main, workers = batches(4), batches(4, workers=2)
    assert all(same(a, b) for a, b in zip(main, workers, strict=True))


def test_ranks_together_give_the_single_process_batch_and_crops() -> None:
    whole = batches(3)
    ranks = [batches(3, rank=r, world=2) for r in range(2)]
    for step in range(3):
        parts = [ranks[r][step] for r in range(2)]
        assert torch.equal(torch.cat([p.indices for p in parts]), whole[step].indices)
        assert torch.equal(torch.cat([p.sample_seeds for p in parts]), whole[step].sample_seeds)
        full = AUGMENTATION(whole[step].data, whole[step].sample_seeds, torch.device("cpu"))
        halves = [AUGMENTATION(p.data, p.sample_seeds, torch.device("cpu")) for p in parts]
        # crop-major: crop c of image b is row c * B + b, so compare per crop position
        glued = torch.cat([h.global_crops.view(2, 4, 3, 16, 16) for h in halves], dim=1)
        assert torch.allclose(glued, full.global_crops.view(2, 8, 3, 16, 16), atol=1e-6)


def test_resume_at_any_step_continues_the_same_stream() -> None:
    fresh = batches(6)
    resumed = batches(2, start=4)
    assert same(resumed[0], fresh[4]) and same(resumed[1], fresh[5])


def test_loading_leaves_the_global_random_state_alone() -> None:
    torch.manual_seed(0)
    expected = torch.rand(3)
    torch.manual_seed(0)
    batches(2, workers=2)
    assert torch.equal(torch.rand(3), expected)


def test_global_batch_must_divide_across_processes() -> None:
    with pytest.raises(SSLKitError, match="not divisible"):
        batches(1, world=3)


_LEAKED_ITERATOR = """
from sslkit.components import BuildContext
from sslkit.data import build_train_loader
from sslkit_plugins.augmentations.kornia_multicrop import KorniaMultiCrop, KorniaMultiCropParams
from sslkit_plugins.datasets.synthetic import SyntheticDataset, SyntheticParams

loader = build_train_loader(
    SyntheticDataset(SyntheticParams(size=30, image_size=16), BuildContext()),
    KorniaMultiCrop(KorniaMultiCropParams(global_crop_size=16, local_crop_size=8, n_local=2), BuildContext()),
    global_batch_size=8, rank=0, world_size=1, seed=7, start_step=0, num_workers=2, device="cpu")
KEPT = iter(loader)  # never closed, as when a stored exception keeps the trainer's frame alive
next(KEPT)
print("batch read", flush=True)
"""


def test_an_iteration_never_closed_does_not_stop_the_interpreter_from_exiting() -> None:
    """Workers ignore SIGTERM, so multiprocessing's exit handler (SIGTERM, then join) alone would wait
    for the workers of a leaked iterator forever; the loader kills them first."""
    done = subprocess.run([sys.executable, "-c", _LEAKED_ITERATOR], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "batch read" in done.stdout


def test_an_error_while_iterating_shuts_the_workers_down() -> None:
    loader = build_train_loader(DATASET, AUGMENTATION, global_batch_size=8, rank=0, world_size=1, seed=7,
                                start_step=0, num_workers=2, device="cpu")
    iterator = iter(loader)
    next(iterator)
    workers = list(loader.loader._iterator._workers)
    assert all(w.is_alive() for w in workers)
    iterator.close()  # what an exception or garbage collection does to the generator
    assert not any(w.is_alive() for w in workers)
