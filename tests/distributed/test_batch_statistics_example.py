"""The worked example of docs/plugins/distributed.md (VICReg's variance and covariance terms over
the global batch) is correct under DDP: two gloo processes holding half the batch each give the
loss and the gradients of one process holding the whole batch.

The example is run from the page itself (its code block after the ``sslkit-example`` marker), so
that the documented code is the tested code.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import Tensor, nn
from torch.nn.parallel import DistributedDataParallel

from sslkit.testing import run_on_processes

pytestmark = pytest.mark.slow

PAGE = Path(__file__).resolve().parents[2] / "docs" / "plugins" / "distributed.md"
N_CROPS, IMAGES, IN_DIM, DIM = 2, 8, 6, 5


def documented_example() -> Callable[..., Tensor]:
    """``variance_covariance`` as defined by the page's code block marked ``batch-statistics``."""
    text = PAGE.read_text(encoding="utf-8")
    found = re.search(r"<!-- sslkit-example: batch-statistics.*?-->\n```python\n(.*?)\n```", text, re.DOTALL)
    assert found, f"{PAGE}: no python block after the 'sslkit-example: batch-statistics' marker"
    namespace: dict[str, Any] = {}
    exec(compile(found.group(1), str(PAGE), "exec"), namespace)  # the documented code, run as written
    return namespace["variance_covariance"]


def _model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(IN_DIM, DIM), nn.Tanh(), nn.Linear(DIM, DIM, bias=False))  # centred: no bias grad


def _images() -> Tensor:
    """Inputs of every crop of every image, ``[N_CROPS, IMAGES, IN_DIM]``."""
    return torch.randn(N_CROPS, IMAGES, IN_DIM, generator=torch.Generator().manual_seed(1))


def _loss_and_grads(model: nn.Module, images: Tensor) -> dict[str, Tensor]:
    """The example's loss on ``images`` (this process's share), and the model's gradients after backward."""
    loss = documented_example()(model(images.reshape(-1, IN_DIM)), N_CROPS)  # crop-major rows
    loss.backward()
    named = model.module.named_parameters() if isinstance(model, DistributedDataParallel) else model.named_parameters()
    return {"loss": loss.detach(), **{name: p.grad.detach().clone() for name, p in named}}


def _on_process(rank: int, world: int) -> dict[str, Tensor]:
    share = IMAGES // world
    model = DistributedDataParallel(_model())  # averages the gradients over the processes, as the engine does
    return _loss_and_grads(model, _images()[:, rank * share:(rank + 1) * share])


def test_two_processes_with_half_the_batch_equal_one_process_with_all_of_it() -> None:
    single = _loss_and_grads(_model(), _images())
    local_only = documented_example()(_model()(_images()[:, :IMAGES // 2].reshape(-1, IN_DIM)), N_CROPS)
    assert abs(float(local_only) - float(single["loss"])) > 1e-3, "half a batch must give another loss"
    assert all(float(g.abs().max()) > 1e-4 for k, g in single.items() if k != "loss"), "vacuous gradients"
    for double in run_on_processes(_on_process, 2):
        assert set(double) == set(single)
        for key, value in single.items():
            torch.testing.assert_close(double[key], value, atol=1e-6, rtol=1e-5, msg=lambda m, k=key: f"{k}: {m}")
