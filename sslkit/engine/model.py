"""Student and teacher networks and their per-step forward passes (DINO, Caron et al. 2021, section 3.1).

The engine composes; plugins compute: a forward evaluates the plan's requests of its side through
their producers, runs each backbone pass at most once per step (cached by model, crop set and
masking, with every block output the plan asked of it) and applies each head once on every token
routed through it (the requests' tensors concatenated, as the official DINOv2 code runs one head call
for CLS and masked patch tokens).
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor, nn

from sslkit.components import Backbone
from sslkit.engine.plan import PassKey, StepPlan
from sslkit.outputs import Output, Producer
from sslkit.step_data import BackboneOutput, Crops


class StepState:
    """One side's view of the step for the producers (:class:`sslkit.outputs.StepView`)."""

    def __init__(self, side: str, modules: Mapping[str, nn.Module], crops: Crops, masks: Tensor | None,
                 masked_crops: Tensor | None, plan: StepPlan) -> None:
        self.side, self._modules, self.crops, self.masks, self.masked_crops = side, modules, crops, masks, masked_crops
        self._plan = plan
        self._passes: dict[PassKey, BackboneOutput] = {}

    def backbone_pass(self, model: str, crops: str, masking: str) -> BackboneOutput:
        if model != self.side:
            raise ValueError(f"a {self.side} request cannot read the {model}'s backbone pass")
        key = (model, crops, masking)
        if key not in self._passes:
            images = self.crops.global_crops if crops == "global" else self.crops.local_crops
            if images is None:
                raise ValueError("the step has no local crops")
            backbone = self._modules["backbone"]
            blocks = self._plan.blocks.get(key, ())
            if masking == "none":
                self._passes[key] = backbone(images, blocks=blocks)
            else:
                self._passes[key] = backbone(images, self.masks, masking=masking, blocks=blocks)
        return self._passes[key]

    def module(self, model: str, name: str) -> nn.Module:
        if model != self.side:
            raise ValueError(f"a {self.side} request cannot read the {model}'s modules")
        return self._modules[name]

    @property
    def passes(self) -> dict[PassKey, BackboneOutput]:
        """The passes run so far this step."""
        return self._passes


def _apply_heads(values: dict[Output, Any], modules: Mapping[str, nn.Module]) -> dict[Output, Any]:
    """Apply every request's head chain; at each stage a head runs once on the rows of all the
    two-dimensional tensors routed through it (concatenated, then split back)."""
    current = dict(values)
    depth = max((len(r.heads) for r in current), default=0)
    for stage in range(depth):
        by_head: dict[str, list[Output]] = {}
        for request in current:
            if len(request.heads) > stage:
                by_head.setdefault(request.heads[stage], []).append(request)
        for head, requests in by_head.items():
            flat = [r for r in requests if current[r].dim() == 2]
            for r in requests:
                if r not in flat:
                    current[r] = modules[head](current[r])
            if flat:
                joined = torch.cat([current[r] for r in flat]) if len(flat) > 1 else current[flat[0]]
                outputs = modules[head](joined).split([current[r].shape[0] for r in flat])
                for r, out in zip(flat, outputs, strict=True):
                    current[r] = out
    return current


def compute_side(side: str, modules: Mapping[str, nn.Module], producers: Mapping[str, Producer], crops: Crops,
                 masks: Tensor | None, masked_crops: Tensor | None, plan: StepPlan,
                 ) -> tuple[dict[Output, Any], dict[PassKey, BackboneOutput]]:
    """Every request of ``side``: producer values with their heads applied, and the passes run."""
    state = StepState(side, modules, crops, masks, masked_crops, plan)
    values = {r: producers[r.kind](r, state) for r in plan.for_model(side)}
    return _apply_heads(values, modules), state.passes


class Student(nn.Module):
    """The trained network: backbone, heads, student-only modules and the losses' own parameters."""

    def __init__(self, backbone: Backbone, heads: nn.ModuleDict, student_modules: nn.ModuleDict,
                 losses: nn.ModuleDict) -> None:
        super().__init__()
        self.backbone = backbone
        self.heads = heads
        self.student_modules = student_modules
        self.losses = losses

    def forward(self, crops: Crops, masks: Tensor | None, masked_crops: Tensor | None, plan: StepPlan,
                producers: Mapping[str, Producer]) -> tuple[dict[Output, Any], dict[PassKey, BackboneOutput]]:
        """The student's requests (with gradients) and the backbone passes it ran."""
        modules = {"backbone": self.backbone, **self.heads, **self.student_modules}
        return compute_side("student", modules, producers, crops, masks, masked_crops, plan)


class Teacher(nn.Module):
    """The teacher's backbone and heads; never receives gradients, no drop-path.

    Either the EMA copy of the student (:meth:`ema_of`, updated after every step) or, for
    distillation, a network of its own with pretrained weights (``frozen``: never updated).
    """

    def __init__(self, backbone: Backbone, heads: nn.ModuleDict, frozen: bool = False) -> None:
        super().__init__()
        self.backbone = backbone
        self.heads = heads
        self.frozen = frozen
        self.requires_grad_(False)
        self.eval()

    @classmethod
    def ema_of(cls, student: Student) -> Teacher:
        """The EMA teacher: a copy of the student's backbone and heads (not of its student-only modules)."""
        return cls(copy.deepcopy(student.backbone), copy.deepcopy(student.heads))

    def train(self, mode: bool = True) -> Teacher:
        """The teacher always stays in evaluation mode (no drop-path, no dropout)."""
        return super().train(False)

    @torch.no_grad()
    def forward(self, crops: Crops, masks: Tensor | None, masked_crops: Tensor | None, plan: StepPlan,
                producers: Mapping[str, Producer]) -> tuple[dict[Output, Any], dict[PassKey, BackboneOutput]]:
        """The teacher's requests (no gradients) and the backbone passes it ran."""
        modules = {"backbone": self.backbone, **self.heads}
        return compute_side("teacher", modules, producers, crops, masks, masked_crops, plan)
