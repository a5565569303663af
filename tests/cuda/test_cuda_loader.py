"""The training loader pins its batches in page-locked memory when the training device is CUDA."""

from __future__ import annotations

import pytest
import torch

from sslkit.components import BuildContext
from sslkit.data import build_train_loader
from sslkit_plugins.augmentations.kornia_multicrop import KorniaMultiCrop, KorniaMultiCropParams
from sslkit_plugins.datasets.synthetic import SyntheticDataset, SyntheticParams

pytestmark = pytest.mark.cuda


@pytest.mark.parametrize("workers", [0, 2])
def test_batches_are_pinned_and_reach_the_device_intact(workers: int) -> None:
    aug = KorniaMultiCrop(KorniaMultiCropParams(global_crop_size=32, local_crop_size=16, n_local=2), BuildContext())
    dataset = SyntheticDataset(SyntheticParams(size=32), BuildContext())
    loader = build_train_loader(dataset, aug, global_batch_size=8, rank=0, world_size=1, seed=0, start_step=0,
                                num_workers=workers, device="cuda")
    batch = next(iter(loader))
    assert all(t.is_pinned() for t in batch.data.values()) and batch.sample_seeds.is_pinned()
    on_device = batch.data["image"].to("cuda", non_blocking=True)
    torch.cuda.synchronize()
    assert torch.equal(on_device.cpu(), batch.data["image"])
    crops = aug(batch.data, batch.sample_seeds, torch.device("cuda"))
    assert crops.global_crops.is_cuda and crops.global_crops.shape == (2 * 8, 3, 32, 32)
