"""The step plan: what the engine must compute this step, merged from every loss's needs."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from sslkit.components import LossNeeds


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
