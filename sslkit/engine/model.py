"""Student and teacher networks and their per-step forward passes (reference section 1).

The engine composes; plugins compute: the student's forward runs the backbone once per crop
resolution (all global crops together, all local crops together) and each head once on every
token that any loss asked of it; the teacher does the same on the unmasked global crops.
"""

from __future__ import annotations

import copy

import torch
from torch import Tensor, nn

from sslkit.components import Backbone, BackboneOutput, Crops
from sslkit.engine.plan import StepPlan


def _run_heads(heads: nn.ModuleDict, plan: StepPlan, cls_tokens: Tensor, patch_tokens: Tensor | None,
               ) -> tuple[dict[str, Tensor], dict[str, Tensor]]:
    """Apply each planned head once to [CLS tokens; masked patch tokens] and split the result."""
    cls_logits: dict[str, Tensor] = {}
    patch_logits: dict[str, Tensor] = {}
    for name in plan.heads:
        parts = []
        if name in plan.cls_heads:
            parts.append(cls_tokens)
        if name in plan.patch_heads and patch_tokens is not None:
            parts.append(patch_tokens)
        logits = heads[name](torch.cat(parts) if len(parts) > 1 else parts[0])
        n_cls = cls_tokens.shape[0] if name in plan.cls_heads else 0
        if name in plan.cls_heads:
            cls_logits[name] = logits[:n_cls]
        if name in plan.patch_heads and patch_tokens is not None:
            patch_logits[name] = logits[n_cls:]
    return cls_logits, patch_logits


class Student(nn.Module):
    """The trained network: backbone, heads and the losses' own parameters (e.g. prototypes)."""

    def __init__(self, backbone: Backbone, heads: nn.ModuleDict, losses: nn.ModuleDict) -> None:
        super().__init__()
        self.backbone = backbone
        self.heads = heads
        self.losses = losses

    def forward(self, crops: Crops, masks: Tensor | None, plan: StepPlan,
                ) -> tuple[BackboneOutput, BackboneOutput | None, dict[str, Tensor], dict[str, Tensor]]:
        """Backbone on the (masked) global crops and on the local crops; heads on the planned tokens.

        Returns the global and local backbone outputs, the CLS logits per head (global crops
        first, then local crops) and the masked-patch logits per head.
        """
        out_global = self.backbone(crops.global_crops, masks if plan.masks else None)
        out_local = None
        cls_tokens = out_global.cls
        if plan.local_crops and crops.local_crops is not None:
            out_local = self.backbone(crops.local_crops)
            cls_tokens = torch.cat([out_global.cls, out_local.cls])
        masked_patches = None
        if plan.patch_heads and masks is not None and out_global.patches is not None:
            masked_patches = out_global.patches[masks]
        cls_logits, patch_logits = _run_heads(self.heads, plan, cls_tokens, masked_patches)
        return out_global, out_local, cls_logits, patch_logits


class Teacher(nn.Module):
    """The EMA copy of the student's backbone and heads; never receives gradients, no drop-path."""

    def __init__(self, student: Student) -> None:
        super().__init__()
        self.backbone = copy.deepcopy(student.backbone)
        self.heads = copy.deepcopy(student.heads)
        self.requires_grad_(False)
        self.eval()

    def train(self, mode: bool = True) -> Teacher:
        """The teacher always stays in evaluation mode (no drop-path, no dropout)."""
        return super().train(False)

    @torch.no_grad()
    def forward(self, crops: Crops, masks: Tensor | None, plan: StepPlan,
                ) -> tuple[BackboneOutput, dict[str, Tensor], dict[str, Tensor]]:
        """Backbone on the unmasked global crops; heads on CLS and on the tokens the student masked."""
        out = self.backbone(crops.global_crops)
        masked_patches = None
        if plan.patch_heads and masks is not None and out.patches is not None:
            masked_patches = out.patches[masks]
        cls_logits, patch_logits = _run_heads(self.heads, plan, out.cls, masked_patches)
        return out, cls_logits, patch_logits
