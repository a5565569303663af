"""Checking that a loss plugin honours the engine's loss contract (:class:`sslkit.components.Loss`).

:func:`assert_loss_contract` runs one forward and backward on fresh copies of the given
outputs and fails with a message that says which rule was broken:

- the loss is a :class:`~sslkit.components.Loss` whose ``needs`` is a :class:`~sslkit.components.LossNeeds`;
- it reads only what its ``needs`` declare (outputs it did not ask for are removed, as the
  engine does not compute them);
- it returns a finite floating-point scalar connected to the autograd graph;
- gradients reach student tensors only (teacher tensors are given ``requires_grad`` so that
  a missing ``detach`` is caught), and they are finite;
- it leaves its inputs unchanged (every loss of a step shares the same outputs);
- ``forward`` leaves the loss's own state (its ``state_dict``: centers, queues, snapshots)
  unchanged: the engine may still skip the step, so new state is applied in ``commit()``,
  which the engine calls only for applied steps (and which this check does not call);
- ``diagnostics()`` returns a mapping of names to scalars.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterator
from dataclasses import dataclass, field

import torch
from torch import Tensor

from sslkit.components import BackboneOutput, Loss, LossNeeds, StepContext, StepOutputs

_BACKBONE_FIELDS = ("cls", "patches", "registers")


@dataclass
class LossCheck:
    """What :func:`assert_loss_contract` observed: the loss value and the gradient of every
    student tensor (``None`` when it received none), keyed like ``"student_global.patches"``
    or ``"student_cls_logits.dino"``."""

    value: float
    grads: dict[str, Tensor | None] = field(default_factory=dict)

    def received_gradient(self, key: str) -> bool:
        """True when the student tensor ``key`` received a non-zero gradient (False when the loss
        did not see it: outputs its needs did not ask for are removed)."""
        grad = self.grads.get(key)
        return grad is not None and bool(grad.abs().sum() > 0)


def _leaf(tensor: Tensor) -> Tensor:
    leaf = tensor.detach().clone()
    return leaf.requires_grad_(True) if leaf.is_floating_point() else leaf


def _copy_backbone(output: BackboneOutput | None) -> BackboneOutput | None:
    if output is None:
        return None
    return BackboneOutput(*(None if getattr(output, f) is None else _leaf(getattr(output, f))
                            for f in _BACKBONE_FIELDS))


def _restricted_copy(out: StepOutputs, needs: LossNeeds | None) -> StepOutputs:
    """Fresh leaf copies of ``out``; with ``needs``, without the outputs the engine would not compute."""

    def heads(logits: dict[str, Tensor], keep: str | None) -> dict[str, Tensor]:
        return {h: _leaf(t) for h, t in logits.items() if needs is None or h == keep}

    with_masks = needs is None or needs.masks or needs.masked_patch_head is not None
    cls_head = needs.cls_head if needs is not None else None
    patch_head = needs.masked_patch_head if needs is not None else None
    return StepOutputs(
        student_global=_copy_backbone(out.student_global),  # type: ignore[arg-type]
        teacher_global=_copy_backbone(out.teacher_global),  # type: ignore[arg-type]
        student_local=_copy_backbone(out.student_local) if needs is None or needs.local_crops else None,
        masks=out.masks.clone() if with_masks and out.masks is not None else None,
        masked_crops=out.masked_crops.clone() if with_masks and out.masked_crops is not None else None,
        student_cls_logits=heads(out.student_cls_logits, cls_head),
        teacher_cls_logits=heads(out.teacher_cls_logits, cls_head),
        student_masked_logits=heads(out.student_masked_logits, patch_head),
        teacher_masked_logits=heads(out.teacher_masked_logits, patch_head),
        crops=dataclasses.replace(out.crops) if out.crops is not None else None,
    )


def _tensors(out: StepOutputs) -> Iterator[tuple[str, Tensor]]:
    """Every tensor of ``out`` with its key (crops excluded: they are engine inputs, not outputs)."""
    for side in ("student_global", "teacher_global", "student_local"):
        output = getattr(out, side)
        if output is not None:
            for f in _BACKBONE_FIELDS:
                if getattr(output, f) is not None:
                    yield f"{side}.{f}", getattr(output, f)
    for name in ("masks", "masked_crops"):
        if getattr(out, name) is not None:
            yield name, getattr(out, name)
    for group in ("student_cls_logits", "teacher_cls_logits", "student_masked_logits", "teacher_masked_logits"):
        for head, tensor in getattr(out, group).items():
            yield f"{group}.{head}", tensor


def _check_inputs_present(loss: Loss, out: StepOutputs) -> None:
    needs = loss.needs
    for head, group in ((needs.cls_head, "cls"), (needs.masked_patch_head, "masked")):
        if head is not None and head not in getattr(out, f"student_{group}_logits"):
            raise AssertionError(f"{type(loss).__name__} needs head {head!r}, which the given outputs lack; "
                                 f"build them with make_step_outputs(heads={{{head!r}: K}})")
    if needs.local_crops and out.student_local is None:
        raise AssertionError(f"{type(loss).__name__} needs local crops; build the outputs with n_local >= 1")
    if (needs.masks or needs.masked_patch_head) and out.masks is None:
        raise AssertionError(f"{type(loss).__name__} needs masks; build the outputs with mask_ratio > 0")


def _state(loss: Loss) -> dict[str, Tensor]:
    return {key: tensor.detach().clone() for key, tensor in loss.state_dict().items()}


def _check_state_unchanged(loss: Loss, before: dict[str, Tensor]) -> None:
    after = loss.state_dict()
    changed = sorted(set(before) ^ set(after)) + [key for key in before if key in after and not (
        before[key].shape == after[key].shape and torch.equal(before[key], after[key].detach()))]
    shown = ", ".join(changed[:5]) + (f" and {len(changed) - 5} more" if len(changed) > 5 else "")
    assert not changed, (
        f"{type(loss).__name__}.forward changed the loss's state ({shown}): the engine may still skip "
        "the step, so compute the new state into a pending attribute and apply it in commit(), which the engine "
        "calls only for applied steps (see sslkit.components.Loss)")


def _forward(loss: Loss, out: StepOutputs, ctx: StepContext, check_needs: bool,
             ) -> tuple[Tensor, StepOutputs, dict[str, Tensor]]:
    """The loss on a fresh copy of ``out``, the copy, and the copy's values before the call."""
    view = _restricted_copy(out, loss.needs if check_needs else None)
    before = {key: tensor.detach().clone() for key, tensor in _tensors(view)}
    try:
        return loss(view, ctx), view, before
    except Exception as exc:
        if not check_needs:
            raise
        try:
            loss(_restricted_copy(out, None), ctx)
        except Exception:
            raise exc from None
        raise AssertionError(
            f"{type(loss).__name__} reads outputs that its needs ({loss.needs}) do not declare: with only the "
            f"declared outputs it failed with {type(exc).__name__}: {exc}. Declare them in LossNeeds "
            "(cls_head, masked_patch_head, local_crops, masks, patch_tokens).") from exc


def assert_loss_contract(loss: Loss, out: StepOutputs, ctx: StepContext, *, expect_gradient: bool = True,
                         check_needs: bool = True) -> LossCheck:
    """Run ``loss(out, ctx)`` once with gradients and check the loss contract (see the module doc).

    ``expect_gradient``: some student tensor must receive a non-zero gradient (pass ``False``
    for steps where the loss is switched off and returns a zero still connected to the graph).
    ``check_needs``: remove the outputs that ``loss.needs`` does not ask for before the call.
    ``out`` itself is never modified (the loss sees copies). Returns the value and the student
    gradients for further assertions.
    """
    name = type(loss).__name__
    assert isinstance(loss, Loss), f"{name} must subclass sslkit.components.Loss"
    assert isinstance(loss.needs, LossNeeds), f"{name}.needs must be a LossNeeds, got {type(loss.needs).__name__}"
    _check_inputs_present(loss, out)
    state = _state(loss)
    value, view, before = _forward(loss, out, ctx, check_needs)
    assert isinstance(value, Tensor), f"{name} returned {type(value).__name__}, expected a scalar Tensor"
    assert value.dim() == 0, f"{name} returned a tensor of shape {tuple(value.shape)}, expected a scalar"
    assert value.is_floating_point(), f"{name} returned dtype {value.dtype}, expected a floating-point scalar"
    assert bool(torch.isfinite(value)), f"{name} returned a non-finite value: {value.item()}"
    assert value.requires_grad, (f"{name}'s value is not connected to the autograd graph (return e.g. "
                                 "`student.sum() * 0` when the loss is switched off, so that backward works)")
    value.backward()
    changed = [key for key, tensor in _tensors(view) if not torch.equal(tensor.detach(), before[key])]
    assert not changed, f"{name} modified its inputs in place: {', '.join(changed)}"
    _check_state_unchanged(loss, state)
    grads: dict[str, Tensor | None] = {}
    for key, tensor in _tensors(view):
        if key.startswith("teacher"):
            assert tensor.grad is None or not bool(tensor.grad.abs().sum() > 0), (
                f"{name} sends gradients to teacher tensor {key}: detach teacher outputs (targets)")
        elif tensor.is_floating_point():
            grads[key] = None if tensor.grad is None else tensor.grad.detach()
            assert tensor.grad is None or bool(torch.isfinite(tensor.grad).all()), (
                f"{name} produced non-finite gradients for {key}")
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
