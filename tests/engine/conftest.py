"""A tiny CPU recipe for engine tests (quickstart with small sizes and no evaluation)."""

from __future__ import annotations

from pathlib import Path

import pytest

QUICKSTART = Path(__file__).resolve().parents[2] / "recipes" / "quickstart.yaml"

TINY = [
    "data.dataset.size=64",
    "data.batch_size=8",
    "data.num_workers=0",
    "data.augmentation.n_local=2",
    "model.heads.dino.out_dim=64",
    "model.heads.dino.hidden_dim=64",
    "model.heads.dino.bottleneck_dim=32",
    "train.max_steps=6",
    "train.checkpoint_every=2",
    "train.log_every=1",
    "train.epoch_length=4",
    "eval.at_start=false",
    "eval.at_end=false",
    "optim.base_lr=0.001",
]

#: DINO + iBOT (sharing the DINO head) + distributed KoLeo, with block masks.
DINOV2_LOSSES = [
    "losses.ibot={name: ibot, weight: 1.0, head: dino}",
    "losses.koleo={name: koleo, weight: 0.1, mode: distributed}",
]


@pytest.fixture
def tiny_overrides() -> list[str]:
    return list(TINY)


@pytest.fixture
def quickstart() -> Path:
    return QUICKSTART
