"""``assert_loss_contract`` accepts correct losses and names the rule each faulty loss breaks."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor

from sslkit.components import BuildContext, Loss, LossNeeds, StepContext, StepOutputs
from sslkit.testing import assert_loss_contract, make_step_context, make_step_outputs
from sslkit_plugins.losses.dino import DINOLoss, DINOLossParams
from sslkit_plugins.losses.ibot import IBOTLoss, IBOTLossParams
from sslkit_plugins.losses.koleo import KoLeoLoss, KoLeoLossParams
from sslkit_plugins.losses.patch_prototype import PatchPrototypeLoss, PatchPrototypeLossParams


class FunctionLoss(Loss):
    """A loss computed by ``fn(out, ctx)``, with the given needs and diagnostics."""

    def __init__(self, fn: Callable[[StepOutputs, StepContext], Tensor], needs: LossNeeds | None = None,
                 diagnostics: dict | None = None) -> None:
        super().__init__()
        self.fn = fn
        self.needs = needs or LossNeeds()
        self._diagnostics = diagnostics or {}

    def forward(self, out: StepOutputs, ctx: StepContext) -> Tensor:
        return self.fn(out, ctx)

    def diagnostics(self) -> dict:
        return self._diagnostics


def cls_distance(out: StepOutputs, ctx: StepContext) -> Tensor:
    return (out.student_global.cls - out.teacher_global.cls.detach()).square().mean()


@pytest.fixture
def step() -> tuple[StepOutputs, StepContext]:
    out = make_step_outputs(heads={"dino": 16}, seed=1)
    return out, make_step_context(out)


def test_builtin_losses_pass_and_report_their_gradients(step) -> None:
    out, ctx = step
    dino = assert_loss_contract(DINOLoss(DINOLossParams(head="dino"), BuildContext(head_dims={"dino": 16})), out, ctx)
    assert dino.received_gradient("student_cls_logits.dino")
    assert not dino.received_gradient("student_global.cls")
    ibot = assert_loss_contract(IBOTLoss(IBOTLossParams(head="dino"), BuildContext(head_dims={"dino": 16})), out, ctx)
    assert ibot.received_gradient("student_masked_logits.dino")
    assert "student_cls_logits.dino" not in ibot.grads  # not declared by its needs, so not given to it
    assert_loss_contract(KoLeoLoss(KoLeoLossParams()), out, ctx)
    assert_loss_contract(PatchPrototypeLoss(PatchPrototypeLossParams(), BuildContext(embed_dim=32)), out, ctx)


@pytest.mark.parametrize("loss_class", [DINOLoss, IBOTLoss])
def test_the_centering_losses_keep_their_center_until_commit(step, loss_class: type[Loss]) -> None:
    """The state check sees real state: the contract passes with the center untouched, and the
    commit that the engine makes for an applied step does move it."""
    out, ctx = step
    params = DINOLossParams(head="dino") if loss_class is DINOLoss else IBOTLossParams(head="dino")
    loss = loss_class(params, BuildContext(head_dims={"dino": 16}))
    before = loss.center.clone()
    assert_loss_contract(loss, out, ctx)
    assert torch.equal(loss.center, before)
    loss.commit()
    assert not torch.equal(loss.center, before)


class CountingLoss(Loss):
    """A loss that counts its steps in a buffer: in forward (wrong) or in commit (right)."""

    def __init__(self, count_in_forward: bool, snapshot_in_forward: bool = False) -> None:
        super().__init__()
        self.register_buffer("count", torch.zeros((), dtype=torch.long))
        self.count_in_forward, self.snapshot_in_forward = count_in_forward, snapshot_in_forward
        self._pending: Tensor | None = None

    def forward(self, out: StepOutputs, ctx: StepContext) -> Tensor:
        if self.count_in_forward:
            self.count.add_(1)
        if self.snapshot_in_forward:
            self.snapshot = torch.nn.Linear(2, 2)  # a new submodule: new state_dict keys
        self._pending = self.count + 1
        return cls_distance(out, ctx)

    def commit(self) -> None:
        if self._pending is not None:
            self.count.copy_(self._pending)
            self._pending = None


def test_state_changed_in_forward_is_named_and_state_applied_in_commit_passes(step) -> None:
    out, ctx = step
    with pytest.raises(AssertionError, match=r"CountingLoss.forward changed the loss's state \(count\).*commit\(\)"):
        assert_loss_contract(CountingLoss(count_in_forward=True), out, ctx)
    with pytest.raises(AssertionError, match=r"changed the loss's state \(snapshot.bias, snapshot.weight\)"):
        assert_loss_contract(CountingLoss(count_in_forward=False, snapshot_in_forward=True), out, ctx)
    loss = CountingLoss(count_in_forward=False)
    assert_loss_contract(loss, out, ctx)
    assert int(loss.count) == 0
    loss.commit()
    assert int(loss.count) == 1


def test_the_given_outputs_are_left_untouched(step) -> None:
    out, ctx = step
    before = out.student_global.cls.detach().clone()
    assert_loss_contract(FunctionLoss(cls_distance), out, ctx)
    assert out.student_global.cls.grad is None and torch.equal(out.student_global.cls, before)


FAULTS: dict[str, tuple[Callable[[StepOutputs, StepContext], Tensor], LossNeeds, str]] = {
    "vector": (lambda o, c: o.student_global.cls.mean(dim=1), LossNeeds(), r"shape \(8,\), expected a scalar"),
    "integer": (lambda o, c: torch.tensor(3), LossNeeds(), "expected a floating-point scalar"),
    "nan": (lambda o, c: o.student_global.cls.mean() * float("nan"), LossNeeds(), "non-finite value"),
    "inf": (lambda o, c: o.student_global.cls.mean() + float("inf"), LossNeeds(), "non-finite value"),
    "detached": (lambda o, c: o.student_global.cls.detach().mean(), LossNeeds(), "not connected to the autograd"),
    "teacher_grad": (lambda o, c: (o.student_global.cls - o.teacher_global.cls).square().mean(), LossNeeds(),
                     "gradients to teacher tensor teacher_global.cls"),
    "in_place": (lambda o, c: o.masks.logical_not_().float().mean() + o.student_global.cls.mean(),
                 LossNeeds(masks=True), "modified its inputs in place: masks"),
    "undeclared_local": (lambda o, c: o.student_local.cls.mean(), LossNeeds(),
                         r"reads outputs that its needs .* do not declare.*AttributeError"),
    "undeclared_head": (lambda o, c: o.student_cls_logits["dino"].mean(), LossNeeds(),
                        r"do not declare.*KeyError"),
    "no_gradient": (lambda o, c: o.student_global.cls.mean() * 0.0, LossNeeds(), "sent no gradient"),
    "nonfinite_gradient": (lambda o, c: (o.student_global.cls.sqrt().nan_to_num() * 0).sum() + 1.0, LossNeeds(),
                           "non-finite gradients for student_global.cls"),
}


@pytest.mark.parametrize("fault", sorted(FAULTS))
def test_each_broken_rule_is_named(step, fault: str) -> None:
    fn, needs, message = FAULTS[fault]
    out, ctx = step
    with pytest.raises(AssertionError, match=message):
        assert_loss_contract(FunctionLoss(fn, needs), out, ctx)


def test_zero_loss_switched_off_passes_when_no_gradient_is_expected(step) -> None:
    out, ctx = step
    check = assert_loss_contract(FunctionLoss(lambda o, c: o.student_global.cls.sum() * 0.0), out, ctx,
                                 expect_gradient=False)
    assert check.value == 0.0 and not check.received_gradient("student_global.cls")


def test_missing_inputs_are_reported_as_test_setup_problems() -> None:
    out = make_step_outputs(n_local=0, heads={"dino": 8})
    ctx = make_step_context(out)
    needs_ibot = FunctionLoss(cls_distance, LossNeeds(cls_head="ibot"))
    with pytest.raises(AssertionError, match=r"needs head 'ibot'.*make_step_outputs\(heads=\{'ibot': K\}\)"):
        assert_loss_contract(needs_ibot, out, ctx)
    with pytest.raises(AssertionError, match="needs local crops; build the outputs with n_local >= 1"):
        assert_loss_contract(FunctionLoss(cls_distance, LossNeeds(local_crops=True)), out, ctx)


@pytest.mark.parametrize(("diagnostics", "message"), [
    ({"entropy": torch.ones(3)}, r"diagnostics\(\)\['entropy'\] must be a scalar"),
    ({"entropy": float("nan")}, r"diagnostics\(\)\['entropy'\] is not finite"),
])
def test_diagnostics_must_be_finite_scalars(step, diagnostics: dict, message: str) -> None:
    out, ctx = step
    with pytest.raises(AssertionError, match=message):
        assert_loss_contract(FunctionLoss(cls_distance, diagnostics=diagnostics), out, ctx)


def test_needs_check_can_be_disabled_for_losses_tested_on_full_outputs(step) -> None:
    out, ctx = step
    reads_local = FunctionLoss(lambda o, c: F.normalize(o.student_local.cls, dim=-1).sum())
    check = assert_loss_contract(reads_local, out, ctx, check_needs=False)
    assert check.received_gradient("student_local.cls")
