"""Shared pieces of the CUDA-only tests: a tiny quickstart run on the GPU."""

from __future__ import annotations

from pathlib import Path

import pytest

QUICKSTART = Path(__file__).resolve().parents[2] / "recipes" / "quickstart.yaml"

#: The quickstart recipe shrunk to a few seconds (heads narrowed, no evaluation), with iBOT and block
#: masks so that every parameter of the ViT is trained (the mask token included).
TINY_CUDA = [
    "run.device=cuda",
    "data.dataset.size=64",
    "data.batch_size=8",
    "data.num_workers=0",
    "data.augmentation.n_local=2",
    "model.heads.dino.out_dim=64",
    "model.heads.dino.hidden_dim=64",
    "model.heads.dino.bottleneck_dim=32",
    "losses.ibot={name: ibot, weight: 1.0, head: dino}",
    "train.max_steps=3",
    "train.checkpoint_every=3",
    "train.log_every=1",
    "eval.at_start=false",
    "eval.at_end=false",
    "optim.base_lr=0.001",
    "optim.lr_scaling=none",
    "optim.warmup_epochs=0",
    "model.heads.dino.freeze_last_layer_epochs=0",
]


@pytest.fixture
def quickstart() -> Path:
    return QUICKSTART


@pytest.fixture
def tiny_cuda() -> list[str]:
    return list(TINY_CUDA)
