"""Decay / no-decay groups with a uniform lr, as in DINO v1 and most derived code (reference section 6)."""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from sslkit.components import BuildContext, ParamGroup
from sslkit.params import param
from sslkit_plugins.param_groups.grouping import merge, trainable_params


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
    (weight-decay multiplier 0). The heads' last layers are kept in separate groups
    (``last_layer/decay``, ``last_layer/no_decay``) so that the engine can freeze them.

    WARNING: ``schedule_first_group_only: true`` deliberately REPRODUCES A BUG of code derived
    from DINO v1, which updated only ``optimizer.param_groups[0]`` with the weight-decay
    schedule, leaving the heads at the optimizer's default decay (0.01 for torch AdamW) for the
    whole run. With it the groups are split by component: ``backbone/decay`` comes first and
    follows the schedule; ``heads/decay`` and the last-layer groups keep
    ``fixed_weight_decay``; no-decay groups stay at 0. Use it only to measure the bug's effect.
    """

    def __init__(self, params: TwoGroupParams, ctx: BuildContext | None = None) -> None:
        self.params = params

    def groups(self, model: nn.Module) -> list[ParamGroup]:
        """Decay / no-decay (and last-layer) groups; ordered decay first, backbone first."""
        buggy = self.params.schedule_first_group_only
        entries = []
        for p in trainable_params(model):
            section = ("backbone" if p.part == "backbone" else "heads") if buggy else ""
            # sorting the keys puts the backbone first, then decay before no-decay, then the last layers
            key = (section != "backbone", p.no_decay, p.is_last_layer, section)
            entries.append((key, None, p.param))
        result = []
        for (_, no_decay, last, section), _, params in sorted(merge(entries), key=lambda group: group[0]):
            name = "/".join(filter(None, (section, "last_layer" if last else "", "no_decay" if no_decay else "decay")))
            first = not result
            follows = first or not buggy
            result.append(
                ParamGroup(
                    name=name,
                    params=params,
                    lr_multiplier=1.0,
                    wd_multiplier=0.0 if no_decay else 1.0,
                    is_last_layer=last,
                    follows_wd_schedule=follows,
                    fixed_weight_decay=0.0 if no_decay else self.params.fixed_weight_decay,
                )
            )
        return result
