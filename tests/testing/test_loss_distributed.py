"""``assert_loss_distributed``: the built-in losses pass on 2 gloo processes; a loss that computes a
batch statistic from its own process's rows fails, with a message that says what differed."""

from __future__ import annotations

import pytest
from torch import Tensor

from sslkit import distributed
from sslkit.components import BuildContext, Loss, Output, StepContext, StepInputs
from sslkit.testing import assert_loss_distributed
from sslkit_plugins.losses.dino import DINOLoss, DINOLossParams
from sslkit_plugins.losses.ibot import IBOTLoss, IBOTLossParams
from sslkit_plugins.losses.koleo import KoLeoLoss, KoLeoLossParams

pytestmark = pytest.mark.slow

HEADS = {"h": 8}
CTX = BuildContext(embed_dim=32, head_dims=HEADS, n_global_crops=2, n_local_crops=2)


def dino() -> Loss:
    return DINOLoss(DINOLossParams(head="h"), CTX)


def ibot_sinkhorn() -> Loss:
    return IBOTLoss(IBOTLossParams(head="h", normalization="sinkhorn_knopp"), CTX)


def koleo_distributed() -> Loss:
    return KoLeoLoss(KoLeoLossParams(mode="distributed"), CTX)


def koleo_local() -> Loss:
    return KoLeoLoss(KoLeoLossParams(mode="local"), CTX)


class FeatureVariance(Loss):
    """Mean squared deviation of the student's global CLS features from their batch mean; ``gather``:
    over the global batch (correct under DDP), otherwise over this process's rows only (wrong)."""

    def __init__(self, gather: bool) -> None:
        super().__init__()
        self.gather = gather
        self.inputs = {"student": Output("cls", model="student", crops="global")}

    def forward(self, inputs: StepInputs, ctx: StepContext) -> Tensor:
        x = inputs["student"]
        if self.gather:
            x = distributed.all_gather(x, with_grad=True)
        return (x - x.mean(dim=0)).pow(2).mean()


def variance_gathered() -> Loss:
    return FeatureVariance(gather=True)


def variance_local() -> Loss:
    return FeatureVariance(gather=False)


@pytest.mark.parametrize("make_loss", [dino, ibot_sinkhorn, koleo_distributed, variance_gathered])
def test_losses_that_reduce_over_the_global_batch_pass(make_loss) -> None:
    check = assert_loss_distributed(make_loss, head_dims=HEADS)
    assert len(check.rank_values) == 2 and "student" in check.max_grad_difference
    if make_loss in (koleo_distributed, variance_gathered):  # every process returns the global batch's loss
        assert check.rank_values == pytest.approx([check.single_value] * 2, rel=1e-5)
    if make_loss is dino:  # the center, updated from the global batch, is compared after commit()
        assert "center" in check.max_state_difference


@pytest.mark.parametrize("make_loss", [koleo_local, variance_local])
def test_a_per_process_batch_statistic_fails(make_loss) -> None:
    with pytest.raises(AssertionError) as failure:
        assert_loss_distributed(make_loss)
    message = str(failure.value)
    assert "2 processes with 4 images each differ from one process with 8" in message
    assert "rank 0:" in message and "rank 1:" in message and "single process" in message
    assert "d loss / d student: max |grad / world_size - single|" in message
