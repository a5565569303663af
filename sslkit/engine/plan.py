"""The step plan: what the engine must compute this step, merged from every loss's needs."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from torch import nn

from sslkit.components import Backbone, LossNeeds
from sslkit.errors import SSLKitError


@dataclass(frozen=True)
class StepPlan:
    """The union of the losses' :class:`LossNeeds`.

    ``cls_heads``: heads applied to CLS tokens; ``patch_heads``: heads applied to masked patch
    tokens; each head runs once per side on all its tokens concatenated.
    """

    cls_heads: tuple[str, ...]
    patch_heads: tuple[str, ...]
    local_crops: bool
    masks: bool
    patch_tokens: bool

    @property
    def heads(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys((*self.cls_heads, *self.patch_heads)))

    @classmethod
    def from_needs(cls, needs: Iterable[LossNeeds]) -> StepPlan:
        needs = list(needs)
        cls_heads = tuple(dict.fromkeys(n.cls_head for n in needs if n.cls_head))
        patch_heads = tuple(dict.fromkeys(n.masked_patch_head for n in needs if n.masked_patch_head))
        return cls(
            cls_heads=cls_heads,
            patch_heads=patch_heads,
            local_crops=any(n.local_crops for n in needs),
            masks=any(n.masks for n in needs) or bool(patch_heads),
            patch_tokens=any(n.patch_tokens for n in needs) or bool(patch_heads),
        )


def unplanned_parameters(plan: StepPlan, backbone: Backbone, heads: nn.ModuleDict) -> list[str]:
    """Names (``backbone.*``, ``heads.<name>.*``, as in the student) of the parameters that no step
    of ``plan`` can give a gradient: the backbone's mask-only parameters when no loss needs masks,
    and every parameter of a head that no loss applies.

    They must not be trainable: DDP waits for a gradient of every trainable parameter in each
    step (and fails on the next one when one never comes), and the optimizer would decay them.
    """
    names: list[str] = []
    if not plan.masks:
        own = dict(backbone.named_parameters())
        for name in backbone.mask_only_parameters():
            if name not in own:
                raise SSLKitError(f"backbone {type(backbone).__name__}: mask_only_parameters() names {name!r}, "
                                  f"which is not one of its parameters")
            names.append(f"backbone.{name}")
    for head_name, head in heads.items():
        if head_name not in plan.heads:
            names.extend(f"heads.{head_name}.{name}" for name, _ in head.named_parameters())
    return names
