"""Optimizer groups for BYOL with a faster predictor (param-group policy ``byol``).

SimSiam (Chen & He 2021, section 4.2 and appendix: the predictor "with a constant lr" works
better) and DirectPred (Tian et al. 2021, "Understanding self-supervised learning dynamics without
contrastive pairs", sections 4-5) find that BYOL-style training avoids dimensional collapse more
easily when the predictor adapts faster than the online network it sits on. This policy gives the
predictor's parameters ``predictor_lr_mult`` times the learning rate of the rest; every other
parameter has multiplier 1 (no layer-wise decay).

Weight decay: multiplier 0 for biases, normalisation weights and every other parameter with at
most one dimension, 1 otherwise; all groups follow the recipe's weight-decay schedule.
Parameters that a head or student-only module freezes (``Head.frozen_for_steps``) get lr 0 for
those steps, as with the built-in policies.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from sslkit.components import BuildContext, ParamGroup
from sslkit.errors import SSLKitError
from sslkit.param_grouping import frozen_steps
from sslkit.params import param


@dataclass
class BYOLGroupsParams:
    """Parameters of the ``byol`` param-group policy."""

    predictor: str = param("predictor", "Name of the predictor under model.student_modules.")
    predictor_lr_mult: float = param(
        10.0, "Learning-rate multiplier of the predictor's parameters (1: the same lr as the rest).", gt=0.0)


class BYOLGroups:
    """Groups ``{predictor,rest}/{decay,no_decay}[/frozen_N]``: the predictor's parameters at
    ``predictor_lr_mult`` times the lr, everything else at 1; no decay on parameters with ndim <= 1."""

    def __init__(self, params: BYOLGroupsParams, ctx: BuildContext) -> None:
        if params.predictor not in ctx.heads:
            known = ", ".join(ctx.heads) or "none"
            raise SSLKitError(f"optim.param_groups (byol): predictor {params.predictor!r} is not a head or "
                              f"student-only module of the recipe (model.heads / model.student_modules: {known})")
        self.params = params
        self.epoch_length = ctx.epoch_length

    def groups(self, model: nn.Module) -> list[ParamGroup]:
        """One group per distinct (predictor or not, decay or not, frozen steps), in order of first appearance."""
        frozen = frozen_steps(model, self.epoch_length)
        prefix = f"student_modules.{self.params.predictor}."
        grouped: dict[tuple[bool, bool, int], list[nn.Parameter]] = {}
        for name, p in model.named_parameters():
            if p.requires_grad:
                grouped.setdefault((name.startswith(prefix), p.ndim > 1, frozen.get(id(p), 0)), []).append(p)
        if not any(is_predictor for is_predictor, _, _ in grouped):
            raise SSLKitError(f"optim.param_groups (byol): no trainable parameter under {prefix}* (the predictor "
                              "must be a student-only module: model.student_modules)")
        result = []
        for (is_predictor, decay, steps), params in grouped.items():
            name = ("predictor" if is_predictor else "rest") + ("/decay" if decay else "/no_decay")
            result.append(ParamGroup(
                name=name + (f"/frozen_{steps}" if steps else ""),
                params=params,
                lr_multiplier=self.params.predictor_lr_mult if is_predictor else 1.0,
                wd_multiplier=1.0 if decay else 0.0,
                frozen_steps=steps,
            ))
        return result
