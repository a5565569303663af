"""The byol_mlp head: input widths (backbone or another head), and the batch-statistics
normalisation that the always-evaluating teacher needs: the same output in train and eval mode,
and, across processes, exactly the statistics of one process holding the whole batch."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from sslkit_byol import BYOLMLP, BYOLMLPParams
from sslkit_byol.batch_stats_norm import BatchStatsNorm

from sslkit.components import BuildContext


def test_projector_reads_the_backbone_width_and_predictor_the_projectors() -> None:
    ctx = BuildContext(embed_dim=12)
    projector = BYOLMLP(BYOLMLPParams(hidden_dim=16, out_dim=8), ctx)
    predictor = BYOLMLP(BYOLMLPParams(hidden_dim=16, out_dim=8, input_head="projector"),
                        BuildContext(embed_dim=12, head_dims={"projector": projector.out_dim}))
    assert predictor(projector(torch.randn(4, 12))).shape == (4, 8)
    assert predictor.net[0].in_features == 8 and projector.net[0].in_features == 12


def test_unknown_input_head_names_the_built_heads() -> None:
    with pytest.raises(ValueError, match=r"input_head 'proj' .*built: projector"):
        BYOLMLP(BYOLMLPParams(input_head="proj"), BuildContext(embed_dim=12, head_dims={"projector": 8}))


@pytest.mark.parametrize("norm", ["batch", "batch_per_process", "layer", "none"])
def test_every_norm_gives_the_output_width(norm: str) -> None:
    head = BYOLMLP(BYOLMLPParams(hidden_dim=16, out_dim=6, norm=norm), BuildContext(embed_dim=10))
    assert head(torch.randn(5, 10)).shape == (5, 6)


def test_batch_statistics_also_in_eval_mode() -> None:
    """The teacher's copy is always in eval mode: it must normalise with its batch, as the student does."""
    norm = BatchStatsNorm(6)
    x = torch.randn(32, 6) * 5 + 3
    trained = norm.train()(x)
    evaluated = norm.eval()(x)
    torch.testing.assert_close(evaluated, trained)
    torch.testing.assert_close(evaluated.mean(0), torch.zeros(6), atol=1e-5, rtol=0)
    torch.testing.assert_close(evaluated.var(0, unbiased=False), torch.ones(6), atol=1e-3, rtol=0)
    assert not list(norm.buffers()), "no running statistics: nothing the EMA update would leave behind"


def test_one_row_is_refused() -> None:
    with pytest.raises(ValueError, match="at least 2 rows"):
        BatchStatsNorm(4)(torch.randn(1, 4))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _worker(rank: int, world: int, port: int, x: torch.Tensor, out: str) -> None:
    """For both ``across_processes`` settings: normalise this process's rows of ``x``, backpropagate
    ``sum(y * weights)`` and save the output, the rows' gradient and the parameter gradients summed
    over processes (as DDP reduces them)."""
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        results = {}
        for across in (True, False):
            norm = BatchStatsNorm(x.shape[1], across_processes=across)
            rows = x.chunk(world)[rank].clone().requires_grad_(True)
            y = norm(rows)
            (y * _weights(y.shape)).sum().backward()
            for grad in (norm.weight.grad, norm.bias.grad):
                dist.all_reduce(grad)
            results[across] = (y.detach(), rows.grad, norm.weight.grad, norm.bias.grad)
        torch.save(results, f"{out}.{rank}")
    finally:
        dist.destroy_process_group()


def _weights(shape: torch.Size | tuple[int, ...]) -> torch.Tensor:
    return torch.arange(float(shape[0] * shape[1])).reshape(shape)


@pytest.mark.slow
def test_two_processes_normalise_like_one_process_holding_the_batch(tmp_path: Path) -> None:
    torch.manual_seed(1)
    x = torch.randn(8, 5) * 2 + 1
    norm = BatchStatsNorm(5)
    rows = x.clone().requires_grad_(True)
    y = norm(rows)
    (y * torch.cat([_weights((4, 5))] * 2)).sum().backward()  # each process weights its 4 rows the same way
    out = str(tmp_path / "result")
    mp.spawn(_worker, args=(2, _free_port(), x, out), nprocs=2)
    first, second = (torch.load(f"{out}.{rank}") for rank in range(2))
    torch.testing.assert_close(torch.cat([first[True][0], second[True][0]]), y.detach())
    torch.testing.assert_close(torch.cat([first[True][1], second[True][1]]), rows.grad)
    torch.testing.assert_close(first[True][2], norm.weight.grad)
    torch.testing.assert_close(first[True][3], norm.bias.grad)
    per_process = torch.cat([first[False][0], second[False][0]])
    assert not torch.allclose(per_process, y.detach(), atol=1e-3), "per-process statistics should differ"
