"""Checking that a loss plugin honours the engine's loss contract (:class:`sslkit.components.Loss`).

:func:`assert_loss_contract` runs one forward and backward on fresh copies of the given
inputs and fails with a message that says which rule was broken:

- the loss is a :class:`~sslkit.components.Loss` whose ``inputs`` is a dict of names to
  :class:`~sslkit.outputs.Output` requests;
- it reads only what it declares (it receives its declared inputs only, in a
  :class:`~sslkit.outputs.StepInputs`, as from the engine);
- it returns a finite floating-point scalar connected to the autograd graph;
- gradients reach student tensors only (teacher tensors are given ``requires_grad`` so that
  a missing ``detach`` is caught), and they are finite;
- it leaves its inputs unchanged (every loss of a step shares the same outputs), modules it
  requested (``backbone``) included;
- ``forward`` leaves the loss's own state (its ``state_dict``: centers, queues, snapshots)
  unchanged: the engine may still skip the step, so new state is applied in ``commit()``,
  which the engine calls only for applied steps (and which this check does not call);
- ``diagnostics()`` returns a mapping of names to scalars.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from sslkit.components import Loss, StepContext
from sslkit.outputs import Output, StepInputs

#: kinds whose tensors are inputs of the step, not model outputs: never given gradients
_STEP_KINDS = ("images", "masks", "masked_crops")


@dataclass
class LossCheck:
    """What :func:`assert_loss_contract` observed: the loss value and the gradient of every
    student tensor (``None`` when it received none), keyed by input name."""

    value: float
    grads: dict[str, Tensor | None] = field(default_factory=dict)

    def received_gradient(self, name: str) -> bool:
        """True when the student input ``name`` received a non-zero gradient."""
        grad = self.grads.get(name)
        return grad is not None and bool(grad.abs().sum() > 0)


def _differentiable(request: Output, value: Tensor) -> bool:
    return value.is_floating_point() and request.kind not in _STEP_KINDS


def _raw(inputs: StepInputs, name: str) -> Any:
    """The value of ``name`` in ``inputs``, tensor or module."""
    try:
        return inputs[name]
    except TypeError:
        return inputs.module(name)


def _copies(loss: Loss, inputs: StepInputs) -> tuple[StepInputs, dict[str, Tensor]]:
    """Fresh copies of the declared inputs (model outputs as leaves with ``requires_grad``) and
    their values before the call."""
    name = type(loss).__name__
    given = set(iter(inputs))  # (not `key in inputs`: Mapping.__contains__ reads the value, a module raises)
    missing = [key for key in loss.inputs if key not in given]
    if missing:
        raise AssertionError(f"{name} declares inputs {', '.join(missing)}, which the given inputs lack; build them "
                             "with sslkit.testing.make_step_inputs(loss, ...)")
    values: dict[str, Any] = {}
    for key, request in loss.inputs.items():
        value = _raw(inputs, key)
        if isinstance(value, Tensor):
            value = value.detach().clone()
            if _differentiable(request, value):
                value.requires_grad_(True)
        values[key] = value
    before = {key: v.detach().clone() for key, v in values.items() if isinstance(v, Tensor)}
    return StepInputs(values), before


def _check_declaration(loss: Loss) -> None:
    name = type(loss).__name__
    declared = getattr(loss, "inputs", None)
    assert isinstance(declared, dict), (
        f"{name}.inputs must be a dict of input names to sslkit.outputs.Output (set in __init__ after "
        f"super().__init__()), got {type(declared).__name__}")
    for key, request in declared.items():
        assert isinstance(key, str) and isinstance(request, Output), (
            f"{name}.inputs[{key!r}] must be an sslkit.outputs.Output keyed by a string, got {request!r}")


def _state(module: nn.Module) -> dict[str, Tensor]:
    return {key: tensor.detach().clone() for key, tensor in module.state_dict().items()}


def _changed(before: Mapping[str, Tensor], after: Mapping[str, Tensor]) -> list[str]:
    return sorted(set(before) ^ set(after)) + [key for key in before if key in after and not (
        before[key].shape == after[key].shape and torch.equal(before[key], after[key].detach()))]


def _check_state_unchanged(loss: Loss, before: dict[str, Tensor]) -> None:
    changed = _changed(before, loss.state_dict())
    shown = ", ".join(changed[:5]) + (f" and {len(changed) - 5} more" if len(changed) > 5 else "")
    assert not changed, (
        f"{type(loss).__name__}.forward changed the loss's state ({shown}): the engine may still skip "
        "the step, so compute the new state into a pending attribute and apply it in commit(), which the engine "
        "calls only for applied steps (see sslkit.components.Loss)")


def _forward(loss: Loss, view: StepInputs, ctx: StepContext) -> Tensor:
    try:
        value: Tensor = loss(view, ctx)
    except KeyError as exc:
        if "no input" not in str(exc):
            raise
        raise AssertionError(f"{type(loss).__name__} reads an input it does not declare ({exc.args[0]}); declare "
                             "every tensor it reads in self.inputs") from exc
    return value


def assert_loss_contract(loss: Loss, inputs: StepInputs, ctx: StepContext, *,
                         expect_gradient: bool = True) -> LossCheck:
    """Run ``loss(inputs, ctx)`` once with gradients and check the loss contract (see the module doc).

    ``inputs`` must hold every input the loss declares (e.g. from
    :func:`~sslkit.testing.make_step_inputs`); the loss receives copies of exactly those.
    ``expect_gradient``: some student tensor must receive a non-zero gradient (pass ``False``
    for steps where the loss is switched off and returns a zero still connected to the graph).
    ``inputs`` itself is never modified. Returns the value and the student gradients.
    """
    name = type(loss).__name__
    assert isinstance(loss, Loss), f"{name} must subclass sslkit.components.Loss"
    _check_declaration(loss)
    view, before = _copies(loss, inputs)
    modules = {key: _state(view.module(key)) for key in view if not isinstance(_raw(view, key), Tensor)}
    state = _state(loss)
    value = _forward(loss, view, ctx)
    assert isinstance(value, Tensor), f"{name} returned {type(value).__name__}, expected a scalar Tensor"
    assert value.dim() == 0, f"{name} returned a tensor of shape {tuple(value.shape)}, expected a scalar"
    assert value.is_floating_point(), f"{name} returned dtype {value.dtype}, expected a floating-point scalar"
    assert bool(torch.isfinite(value)), f"{name} returned a non-finite value: {value.item()}"
    assert value.requires_grad, (f"{name}'s value is not connected to the autograd graph (return e.g. "
                                 "`student.sum() * 0` when the loss is switched off, so that backward works)")
    torch.autograd.backward(value)
    changed = [key for key, tensor in before.items() if not torch.equal(view[key].detach(), tensor)]
    changed += [key for key, saved in modules.items() if _changed(saved, view.module(key).state_dict())]
    assert not changed, f"{name} modified its inputs in place: {', '.join(changed)}"
    _check_state_unchanged(loss, state)
    grads: dict[str, Tensor | None] = {}
    for key, request in loss.inputs.items():
        if key not in before or not view[key].requires_grad:
            continue
        tensor = view[key]
        if request.model == "teacher":
            assert tensor.grad is None or not bool(tensor.grad.abs().sum() > 0), (
                f"{name} sends gradients to teacher input {key!r}: detach teacher outputs (targets)")
        else:
            grads[key] = None if tensor.grad is None else tensor.grad.detach()
            assert tensor.grad is None or bool(torch.isfinite(tensor.grad).all()), (
                f"{name} produced non-finite gradients for {key!r}")
    check = LossCheck(value.item(), grads)
    if expect_gradient:
        assert any(check.received_gradient(key) for key in grads), f"{name} sent no gradient to any student tensor"
    diagnostics = loss.diagnostics()
    assert isinstance(diagnostics, dict), f"{name}.diagnostics() must return a dict, got {type(diagnostics).__name__}"
    for key, scalar in diagnostics.items():
        assert isinstance(key, str), f"{name}.diagnostics() keys must be strings, got {key!r}"
        number = scalar.item() if isinstance(scalar, Tensor) and scalar.numel() == 1 else scalar
        assert isinstance(number, int | float), f"{name}.diagnostics()[{key!r}] must be a scalar, got {scalar!r}"
        assert math.isfinite(number), f"{name}.diagnostics()[{key!r}] is not finite: {number}"
    return check
