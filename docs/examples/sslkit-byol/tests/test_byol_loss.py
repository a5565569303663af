"""The BYOL loss against a direct formula (hand-computed cosines, float64), its symmetry in the two
views, stop-gradient on the target, and the checks a loss owes the engine (scalar, finite, no state
changed by forward, diagnostics)."""

from __future__ import annotations

import math

import pytest
import torch
from sslkit_byol import BYOLLoss, BYOLLossParams, byol_loss

from sslkit.components import BuildContext, StepContext, StepInputs
from sslkit.testing import RandomStep, assert_loss_contract

B, K = 3, 5


def naive_byol(prediction: torch.Tensor, target: torch.Tensor) -> float:
    """sum over views v of mean over images b of 2 - 2 <q_v,b, z_(1-v),b> / (|q| |z|), with explicit loops."""
    q, z = prediction.detach().double(), target.detach().double()
    batch = q.shape[0] // 2
    total = 0.0
    for view in range(2):
        for image in range(batch):
            u, w = q[view * batch + image], z[(1 - view) * batch + image]
            dot = sum(float(a) * float(b) for a, b in zip(u, w, strict=True))
            cosine = dot / (math.sqrt(float((u * u).sum())) * math.sqrt(float((w * w).sum())))
            total += 2.0 - 2.0 * cosine
    return total / batch


def step(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    prediction = torch.randn(2 * B, K, generator=generator, requires_grad=True)
    target = torch.randn(2 * B, K, generator=generator)
    return prediction, target


def context(logging_step: bool = True) -> StepContext:
    return StepContext(step=0, max_steps=10, n_global=2, n_local=0, batch_size=B, global_batch_size=B,
                       logging_step=logging_step)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_value_equals_the_direct_formula(seed: int) -> None:
    prediction, target = step(seed)
    assert byol_loss(prediction, target).item() == pytest.approx(naive_byol(prediction, target), rel=1e-6)


def test_each_view_is_compared_with_the_other_views_target() -> None:
    prediction, _ = step()
    other_view = prediction.detach().roll(B, dims=0) * 3.0  # the other view's rows, scaled: cosine 1
    assert byol_loss(prediction, other_view).item() == pytest.approx(0.0, abs=1e-6)
    assert byol_loss(prediction, prediction.detach()).item() > 0.1  # the same view is not the target


def test_symmetric_in_the_two_views() -> None:
    prediction, target = step()
    swapped = byol_loss(prediction.roll(B, dims=0), target.roll(B, dims=0))
    assert swapped.item() == pytest.approx(byol_loss(prediction, target).item(), rel=1e-6)


def test_gradients_reach_only_the_student_prediction() -> None:
    prediction, target = step()
    target.requires_grad_(True)  # a missing stop-gradient would send it a gradient
    loss = BYOLLoss(BYOLLossParams(), BuildContext())
    value = loss(StepInputs({"prediction": prediction, "target": target}), context())
    assert value.dim() == 0 and value.requires_grad and math.isfinite(value.item())
    value.backward()
    assert target.grad is None
    assert prediction.grad is not None and bool(torch.isfinite(prediction.grad).all())
    assert float(prediction.grad.abs().sum()) > 0


def test_honours_the_loss_contract() -> None:
    """sslkit's own check: declared inputs only, finite scalar, gradients to the student only, inputs
    and state unchanged, scalar diagnostics."""
    loss = BYOLLoss(BYOLLossParams(), BuildContext())
    random_step = RandomStep(batch_size=4, n_local=0, head_dims={"projector": 16, "predictor": 16})
    check = assert_loss_contract(loss, random_step.inputs(loss), random_step.context())
    assert check.received_gradient("prediction")
    assert 0.0 <= check.value <= 8.0


def test_declares_the_projector_and_the_student_only_predictor() -> None:
    inputs = BYOLLoss(BYOLLossParams(projector="proj", predictor="pred"), BuildContext()).inputs
    assert inputs["prediction"].model == "student" and inputs["prediction"].heads == ("proj", "pred")
    assert inputs["target"].model == "teacher" and inputs["target"].heads == ("proj",)
    assert {r.kind for r in inputs.values()} == {"cls"} and {r.crops for r in inputs.values()} == {"global"}


def test_forward_keeps_no_state_and_reports_diagnostics() -> None:
    loss = BYOLLoss(BYOLLossParams(), BuildContext())
    before = {k: v.clone() for k, v in loss.state_dict().items()}
    prediction, target = step()
    value = loss(StepInputs({"prediction": prediction, "target": target}), context())
    assert loss.state_dict().keys() == before.keys()
    diagnostics = loss.diagnostics()
    assert set(diagnostics) == {"cosine", "target_std"}
    assert float(diagnostics["cosine"]) == pytest.approx(1.0 - value.item() / 4.0)
    assert all(math.isfinite(float(v)) for v in diagnostics.values())


def test_needs_two_global_crops() -> None:
    with pytest.raises(ValueError, match="two global crops"):
        BYOLLoss(BYOLLossParams(), BuildContext(n_global_crops=3))
