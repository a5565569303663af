"""Decay / no-decay groups with a uniform lr, as in DINO v1 (Caron et al. 2021, appendix) and most derived code."""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from sslkit.components import BuildContext, ParamGroup
from sslkit.param_grouping import merge, trainable_params
from sslkit.params import param


@dataclass
class TwoGroupParams:
    """Parameters of the ``two_group`` param-group policy."""

    schedule_first_group_only: bool = param(
        False,
        "ABLATION ONLY, reproduces a known bug: only the first group (backbone, decay) follows the "
        "weight-decay schedule; the other decaying groups (heads, losses) keep fixed_weight_decay.",
    )
    fixed_weight_decay: float = param(
        0.01, "Weight decay kept by decaying groups that skip the schedule (torch AdamW's default).", ge=0.0
    )


class TwoGroup:
    """Two groups, ``decay`` and ``no_decay``, both with lr multiplier 1.

    ``no_decay`` holds biases, norm weights, LayerScale gammas and other 1-D parameters
    (weight-decay multiplier 0). Parameters that a head or student-only module freezes for their
    first steps (:meth:`~sslkit.components.Head.frozen_for_steps`, e.g. the DINO head's prototype
    layer, converted with ``ctx.epoch_length`` steps per epoch) are kept in separate groups per
    number of steps (``frozen_1250/decay``, ``frozen_1250/no_decay``) with ``frozen_steps`` set.

    WARNING: ``schedule_first_group_only: true`` deliberately REPRODUCES A BUG of code derived
    from DINO v1, which updated only ``optimizer.param_groups[0]`` with the weight-decay
    schedule, leaving the heads at the optimizer's default decay (0.01 for torch AdamW) for the
    whole run. With it the groups are split by component: ``backbone/decay`` comes first and
    follows the schedule; ``heads/decay`` and the frozen groups keep
    ``fixed_weight_decay``; no-decay groups stay at 0. Use it only to measure the bug's effect.
    """

    def __init__(self, params: TwoGroupParams, ctx: BuildContext) -> None:
        self.params = params
        self.epoch_length = ctx.epoch_length

    def groups(self, model: nn.Module) -> list[ParamGroup]:
        """Decay / no-decay (and frozen) groups; ordered decay first, backbone first."""
        buggy = self.params.schedule_first_group_only
        entries: list[tuple[tuple[bool, bool, int, str], None, nn.Parameter]] = []
        for p in trainable_params(model, self.epoch_length):
            section = ("backbone" if p.part == "backbone" else "heads") if buggy else ""
            # sorting the keys puts the backbone first, then decay before no-decay, then the frozen groups
            key = (section != "backbone", p.no_decay, p.frozen_steps, section)
            entries.append((key, None, p.param))
        result: list[ParamGroup] = []
        for (_, no_decay, frozen, section), _, params in sorted(merge(entries), key=lambda group: group[0]):
            parts = (section, f"frozen_{frozen}" if frozen else "", "no_decay" if no_decay else "decay")
            name = "/".join(filter(None, parts))
            first = not result
            follows = first or not buggy
            result.append(
                ParamGroup(
                    name=name,
                    params=params,
                    lr_multiplier=1.0,
                    wd_multiplier=0.0 if no_decay else 1.0,
                    frozen_steps=frozen,
                    follows_wd_schedule=follows,
                    fixed_weight_decay=0.0 if no_decay else self.params.fixed_weight_decay,
                )
            )
        return result
