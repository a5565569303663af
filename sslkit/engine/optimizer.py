"""AdamW over the policy's parameter groups, with the schedules applied to every group each step.

DINOv2 (Oquab et al. 2023, appendix): every group's lr is ``schedule * lr_multiplier`` (0 during a
group's first ``frozen_steps`` steps, e.g. DINO's prototype layer) and every group's weight decay is
``schedule * wd_multiplier``, heads included; a group opts out of the weight-decay schedule only
through ``follows_wd_schedule`` (which exists to reproduce a known bug for ablations).

Before the first optimizer step every parameter the optimizer holds must have received a
gradient: a trainable parameter that no loss reaches would stall DDP's gradient reduction.
"""

from __future__ import annotations

import torch
from torch import nn

from sslkit.components import ParamGroup
from sslkit.errors import SSLKitError


def check_groups(model: nn.Module, groups: list[ParamGroup]) -> None:
    """Every trainable parameter must be in exactly one group, and no frozen one in any (the engine
    freezes what the step plan cannot train; a policy must skip parameters without ``requires_grad``)."""
    seen: dict[int, str] = {}
    for group in groups:
        for p in group.params:
            if id(p) in seen:
                raise SSLKitError(f"param_groups: a parameter is in groups {seen[id(p)]!r} and {group.name!r}")
            seen[id(p)] = group.name
    frozen = [f"{n} (group {seen[id(p)]!r})" for n, p in model.named_parameters()
              if not p.requires_grad and id(p) in seen]
    if frozen:
        raise SSLKitError(f"param_groups: frozen parameters (requires_grad=False) in a group: {', '.join(frozen[:8])}; "
                          "a param-group policy must skip them")
    missing = [n for n, p in model.named_parameters() if p.requires_grad and id(p) not in seen]
    if missing:
        raise SSLKitError(f"param_groups: trainable parameters in no group: {', '.join(missing[:8])}")


class UnusedParameterError(SSLKitError):
    """Trainable parameters received no gradient in the first step."""


def check_first_step_gradients(optimizer: torch.optim.Optimizer, model: nn.Module) -> None:
    """Before the optimizer's first step, raise :class:`UnusedParameterError` naming every parameter
    it holds that has no gradient (later steps skip the check: a hook may not remove itself while
    the optimizer iterates its hooks).

    ``model`` (the unwrapped student) names the parameters. The engine freezes what the step plan
    cannot train (see :func:`sslkit.engine.plan.unplanned_parameters`); anything left without a
    gradient is a parameter that a plugin owns but no loss uses.
    """
    names = {id(p): name for name, p in model.named_parameters()}
    checked = False

    def hook(opt: torch.optim.Optimizer, _args: object, _kwargs: object) -> None:
        nonlocal checked
        if checked:
            return
        checked = True
        missing = [names.get(id(p), f"<unnamed {tuple(p.shape)}>") for group in opt.param_groups
                   for p in group["params"] if p.grad is None]
        if missing:
            shown = ", ".join(missing[:12]) + (f" (and {len(missing) - 12} more)" if len(missing) > 12 else "")
            raise UnusedParameterError(
                f"{len(missing)} trainable parameter(s) received no gradient in the first step: {shown}. "
                "No loss of this recipe uses them, yet they are trainable: under DDP every trainable parameter "
                "must receive a gradient in every step (the gradient all-reduce waits for it and the next step "
                "fails with 'Expected to have finished reduction in the prior iteration'), and the optimizer "
                "would only weight-decay them. Remove the component that owns them from the recipe, or, in the "
                "plugin that owns them, set requires_grad=False (a backbone lists parameters that only a masked "
                "forward uses in Backbone.mask_only_parameters()).")

    optimizer.register_step_pre_hook(hook)


def build_optimizer(groups: list[ParamGroup], betas: tuple[float, float], eps: float, implementation: str,
                    device: torch.device) -> torch.optim.AdamW:
    """AdamW with one torch param group per :class:`ParamGroup`, in the same order.

    ``auto`` is the fused kernel on CUDA and on the CPU (on the CPU one step over the 7.9 M
    parameters of the throughput benchmark's model takes a quarter of the foreach kernel's time,
    docs/performance.md) and foreach on other devices."""
    options: dict[str, bool] = {}
    if implementation == "auto":
        options = {"fused": True} if device.type in ("cuda", "cpu") else {"foreach": True}
    elif implementation in ("fused", "foreach"):
        options = {implementation: True}
    else:
        options = {"foreach": False}
    torch_groups = [{"params": g.params, "lr": 0.0, "weight_decay": g.fixed_weight_decay, "name": g.name}
                    for g in groups if g.params]
    return torch.optim.AdamW(torch_groups, lr=0.0, betas=betas, eps=eps, **options)


def apply_schedules(optimizer: torch.optim.Optimizer, groups: list[ParamGroup], lr: float, weight_decay: float,
                    step: int) -> None:
    """Set step ``step``'s lr and weight decay on every group."""
    for torch_group, group in zip(optimizer.param_groups, [g for g in groups if g.params], strict=True):
        torch_group["lr"] = 0.0 if step < group.frozen_steps else lr * group.lr_multiplier
        if group.follows_wd_schedule:
            torch_group["weight_decay"] = weight_decay * group.wd_multiplier
