"""``assert_loss_contract`` accepts correct losses and names the rule each faulty loss breaks."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch
from torch import Tensor

from sslkit.components import BuildContext, Loss, Output, StepContext, StepInputs
from sslkit.testing import RandomStep, TinyPatchBackbone, assert_loss_contract
from sslkit_plugins.losses.dino import DINOLoss, DINOLossParams
from sslkit_plugins.losses.ibot import IBOTLoss, IBOTLossParams
from sslkit_plugins.losses.koleo import KoLeoLoss, KoLeoLossParams
from sslkit_plugins.losses.patch_prototype import PatchPrototypeLoss, PatchPrototypeLossParams

STUDENT_TEACHER = {"student": Output("cls"), "teacher": Output("cls", model="teacher")}


class FunctionLoss(Loss):
    """A loss computed by ``fn(inputs, ctx)``, with the given declared inputs and diagnostics."""

    def __init__(self, fn: Callable[[StepInputs, StepContext], Tensor], inputs: dict[str, Output] | None = None,
                 diagnostics: dict | None = None) -> None:
        super().__init__()
        self.fn = fn
        self.inputs = dict(STUDENT_TEACHER if inputs is None else inputs)
        self._diagnostics = diagnostics or {}

    def forward(self, inputs: StepInputs, ctx: StepContext) -> Tensor:
        return self.fn(inputs, ctx)

    def diagnostics(self) -> dict:
        return self._diagnostics


def cls_distance(inputs: StepInputs, ctx: StepContext) -> Tensor:
    return (inputs["student"] - inputs["teacher"].detach()).square().mean()


@pytest.fixture
def step() -> RandomStep:
    return RandomStep(head_dims={"dino": 16}, seed=1)


def check(loss: Loss, step: RandomStep, **kwargs):
    return assert_loss_contract(loss, step.inputs(loss), step.context(), **kwargs)


def test_builtin_losses_pass_and_report_their_gradients(step: RandomStep) -> None:
    dino = check(DINOLoss(DINOLossParams(head="dino"), BuildContext(head_dims={"dino": 16})), step)
    assert dino.received_gradient("student") and set(dino.grads) == {"student"}
    ibot = check(IBOTLoss(IBOTLossParams(head="dino"), BuildContext(head_dims={"dino": 16})), step)
    assert ibot.received_gradient("student")
    assert check(KoLeoLoss(KoLeoLossParams(), BuildContext()), step).received_gradient("student")
    for mode in ("masked", "all"):
        loss = PatchPrototypeLoss(PatchPrototypeLossParams(mode=mode), BuildContext(embed_dim=32))
        assert check(loss, step).received_gradient("student")


@pytest.mark.parametrize("loss_class", [DINOLoss, IBOTLoss])
def test_the_centering_losses_keep_their_center_until_commit(step: RandomStep, loss_class: type[Loss]) -> None:
    """The state check sees real state: the contract passes with the center untouched, and the
    commit that the engine makes for an applied step does move it."""
    params = DINOLossParams(head="dino") if loss_class is DINOLoss else IBOTLossParams(head="dino")
    loss = loss_class(params, BuildContext(head_dims={"dino": 16}))
    before = loss.center.clone()
    check(loss, step)
    assert torch.equal(loss.center, before)
    loss.commit()
    assert not torch.equal(loss.center, before)


class CountingLoss(Loss):
    """A loss that counts its steps in a buffer: in forward (wrong) or in commit (right)."""

    def __init__(self, count_in_forward: bool, snapshot_in_forward: bool = False) -> None:
        super().__init__()
        self.inputs = dict(STUDENT_TEACHER)
        self.register_buffer("count", torch.zeros((), dtype=torch.long))
        self.count_in_forward, self.snapshot_in_forward = count_in_forward, snapshot_in_forward
        self._pending: Tensor | None = None

    def forward(self, inputs: StepInputs, ctx: StepContext) -> Tensor:
        if self.count_in_forward:
            self.count.add_(1)
        if self.snapshot_in_forward:
            self.snapshot = torch.nn.Linear(2, 2)  # a new submodule: new state_dict keys
        self._pending = self.count + 1
        return cls_distance(inputs, ctx)

    def commit(self) -> None:
        if self._pending is not None:
            self.count.copy_(self._pending)
            self._pending = None


def test_state_changed_in_forward_is_named_and_state_applied_in_commit_passes(step: RandomStep) -> None:
    with pytest.raises(AssertionError, match=r"CountingLoss.forward changed the loss's state \(count\).*commit\(\)"):
        check(CountingLoss(count_in_forward=True), step)
    with pytest.raises(AssertionError, match=r"changed the loss's state \(snapshot.bias, snapshot.weight\)"):
        check(CountingLoss(count_in_forward=False, snapshot_in_forward=True), step)
    loss = CountingLoss(count_in_forward=False)
    check(loss, step)
    assert int(loss.count) == 0
    loss.commit()
    assert int(loss.count) == 1


def test_the_given_inputs_are_left_untouched(step: RandomStep) -> None:
    loss = FunctionLoss(cls_distance)
    inputs = step.inputs(loss)
    before = inputs["student"].detach().clone()
    assert_loss_contract(loss, inputs, step.context())
    assert inputs["student"].grad is None and torch.equal(inputs["student"], before)


def _modifies_backbone(inputs: StepInputs, ctx: StepContext) -> Tensor:
    with torch.no_grad():
        inputs.module("backbone").norm.bias.add_(1.0)
    return inputs["student"].mean()


MASKS = {"student": Output("cls"), "masks": Output("masks")}
BACKBONE = {"student": Output("cls"), "backbone": Output("backbone", model="teacher")}
FAULTS: dict[str, tuple[Callable[[StepInputs, StepContext], Tensor], dict[str, Output] | None, str]] = {
    "vector": (lambda i, c: i["student"].mean(dim=1), None, r"shape \(8,\), expected a scalar"),
    "integer": (lambda i, c: torch.tensor(3), None, "expected a floating-point scalar"),
    "nan": (lambda i, c: i["student"].mean() * float("nan"), None, "non-finite value"),
    "inf": (lambda i, c: i["student"].mean() + float("inf"), None, "non-finite value"),
    "detached": (lambda i, c: i["student"].detach().mean(), None, "not connected to the autograd"),
    "teacher_grad": (lambda i, c: (i["student"] - i["teacher"]).square().mean(), None,
                     "gradients to teacher input 'teacher'"),
    "in_place": (lambda i, c: i["masks"].logical_not_().float().mean() + i["student"].mean(), MASKS,
                 "modified its inputs in place: masks"),
    "module_changed": (_modifies_backbone, BACKBONE, "modified its inputs in place: backbone"),
    "undeclared": (lambda i, c: i["local"].mean(), None, r"reads an input it does not declare \(no input 'local'"),
    "no_gradient": (lambda i, c: i["student"].mean() * 0.0, None, "sent no gradient"),
    "nonfinite_gradient": (lambda i, c: (i["student"].sqrt().nan_to_num() * 0).sum() + 1.0, None,
                           "non-finite gradients for 'student'"),
}


@pytest.mark.parametrize("fault", sorted(FAULTS))
def test_each_broken_rule_is_named(step: RandomStep, fault: str) -> None:
    fn, inputs, message = FAULTS[fault]
    step.modules["teacher"] = TinyPatchBackbone()
    with pytest.raises(AssertionError, match=message):
        check(FunctionLoss(fn, inputs), step)


def test_zero_loss_switched_off_passes_when_no_gradient_is_expected(step: RandomStep) -> None:
    result = check(FunctionLoss(lambda i, c: i["student"].sum() * 0.0), step, expect_gradient=False)
    assert result.value == 0.0 and not result.received_gradient("student")


def test_declarations_and_missing_inputs_are_reported(step: RandomStep) -> None:
    loss = FunctionLoss(cls_distance)
    with pytest.raises(AssertionError, match=r"declares inputs teacher, which the given inputs lack.*make_step_inputs"):
        assert_loss_contract(loss, StepInputs({"student": step.value(Output("cls"))}), step.context())
    loss.inputs = {"student": "cls"}  # type: ignore[dict-item]
    with pytest.raises(AssertionError, match=r"inputs\['student'\] must be an sslkit.outputs.Output"):
        assert_loss_contract(loss, StepInputs({}), step.context())
    loss.inputs = ["student"]  # type: ignore[assignment]
    with pytest.raises(AssertionError, match=r"\.inputs must be a dict"):
        assert_loss_contract(loss, StepInputs({}), step.context())


@pytest.mark.parametrize(("diagnostics", "message"), [
    ({"entropy": torch.ones(3)}, r"diagnostics\(\)\['entropy'\] must be a scalar"),
    ({"entropy": float("nan")}, r"diagnostics\(\)\['entropy'\] is not finite"),
])
def test_diagnostics_must_be_finite_scalars(step: RandomStep, diagnostics: dict, message: str) -> None:
    with pytest.raises(AssertionError, match=message):
        check(FunctionLoss(cls_distance, diagnostics=diagnostics), step)
