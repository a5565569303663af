"""``unsharded_copy`` turns an FSDP2-sharded backbone into a plain module with the full weights.

Two gloo processes shard a tiny ViT (inside a root module, as the engine shards its teacher) and
ask for a copy built from a differently seeded instance: its weights must equal the original's
before sharding, and its outputs those of the original on the same images.
"""

from __future__ import annotations

import os
import socket

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn

from sslkit.components import BuildContext
from sslkit.engine.strategy import apply_fsdp2, unsharded_copy
from sslkit_plugins.backbones.vit import ViT
from sslkit_plugins.backbones.vit_params import ViTParams

pytestmark = pytest.mark.slow


def _vit(seed: int) -> ViT:
    torch.manual_seed(seed)
    return ViT(ViTParams(size="tiny", embed_dim=16, depth=2, num_heads=2, patch_size=4, img_size=16), BuildContext())


class _Root(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.backbone = _vit(0)
        self.head = nn.Linear(16, 8)


def _worker(rank: int, port: int, results: dict[int, bool]) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=2)
    try:
        torch.set_num_threads(1)
        root = _Root()
        reference = {k: v.clone() for k, v in root.backbone.state_dict().items()}
        images = torch.randn(3, 3, 16, 16, generator=torch.Generator().manual_seed(1))
        with torch.no_grad():
            expected = root.backbone.eval()(images).cls
        apply_fsdp2(root, None)
        assert any(type(p).__name__ == "DTensor" for p in root.backbone.parameters())  # really sharded
        copy = unsharded_copy(root, "backbone", lambda: _vit(123), torch.device("cpu"))
        state = copy.state_dict()
        same_weights = state.keys() == reference.keys() and all(torch.equal(state[k], reference[k]) for k in state)
        with torch.no_grad():
            same_outputs = torch.allclose(copy(images).cls, expected, atol=1e-6)
        results[rank] = same_weights and same_outputs and not copy.training
    finally:
        dist.destroy_process_group()


def test_an_unsharded_copy_holds_the_full_weights() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    results = mp.Manager().dict()
    mp.spawn(_worker, args=(port, results), nprocs=2)
    assert dict(results) == {0: True, 1: True}
