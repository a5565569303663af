"""The loss over two processes (gloo, each holding half of the batch) equals the loss of one process
holding the whole batch: the masked tokens are counted over the global batch (sslkit.distributed)."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from sslkit_latent_mim.loss import LatentMIMLoss, LatentMIMParams

from sslkit.components import BuildContext, StepContext
from sslkit.outputs import StepInputs

CROPS, N, D = 4, 16, 8


def batch() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Masks with a different number of masked patches per crop (so halves differ in count), the targets and
    predictions at the masked positions (masks.nonzero() order)."""
    generator = torch.Generator().manual_seed(0)
    masks = torch.rand(CROPS, N, generator=generator) < torch.tensor([[0.2], [0.9], [0.5], [0.7]])
    targets = torch.randn(int(masks.sum()), D, generator=generator)
    predictions = torch.randn(int(masks.sum()), D, generator=generator)
    return masks, targets, predictions


def loss_and_grad(masks: torch.Tensor, targets: torch.Tensor, predictions: torch.Tensor) -> tuple[float, torch.Tensor]:
    loss = LatentMIMLoss(LatentMIMParams(top_k=1), BuildContext())
    leaf = predictions.clone().requires_grad_(True)
    inputs = StepInputs({"predictions": leaf, "targets": targets, "masks": masks})
    value = loss(inputs, StepContext(0, 1, CROPS, 0, CROPS, CROPS))
    value.backward()
    return value.item(), leaf.grad


def _worker(rank: int, port: int, out: str) -> None:
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=2)
    try:
        masks, targets, predictions = batch()
        rows = slice(rank * CROPS // 2, (rank + 1) * CROPS // 2)
        before = int(masks[: rows.start].sum())
        mine = slice(before, before + int(masks[rows].sum()))
        value, grad = loss_and_grad(masks[rows], targets[mine], predictions[mine])
        torch.save({"value": value, "grad": grad}, Path(out) / f"rank{rank}.pt")
    finally:
        dist.destroy_process_group()


@pytest.mark.slow
def test_two_processes_equal_one(tmp_path: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    mp.spawn(_worker, args=(port, str(tmp_path)), nprocs=2, join=True)
    parts = [torch.load(tmp_path / f"rank{r}.pt") for r in range(2)]
    value, grad = loss_and_grad(*batch())
    # DDP averages the processes' gradients: the mean of the per-process losses is what it optimises
    assert sum(p["value"] for p in parts) / 2 == pytest.approx(value, rel=1e-6)
    torch.testing.assert_close(torch.cat([p["grad"] for p in parts]) / 2, grad)
