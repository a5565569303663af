"""A third-party loss plugin: student CLS features pulled towards the teacher's (cosine distance).

loss = mean over global crops b of 1 - cos(s_b, t_b), with s the student's and t the teacher's
backbone CLS token of the same global crop (BYOL/SimSiam-style distillation without a predictor).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch.nn.functional as F
from torch import Tensor

import sslkit
from sslkit.components import BuildContext, Loss, Output, StepContext, StepInputs
from sslkit.params import param


@dataclass
class CosineParams:
    """Parameters of the cosine distillation loss."""

    scale: float = param(1.0, "Multiplier of the cosine distance.", gt=0.0)


class CosineLoss(Loss):
    """1 - cosine similarity between student and teacher CLS tokens of each global crop."""

    def __init__(self, params: CosineParams, ctx: BuildContext) -> None:
        super().__init__()
        self.params = params
        self.inputs = {"student": Output("cls", model="student"), "teacher": Output("cls", model="teacher")}

    def forward(self, inputs: StepInputs, ctx: StepContext) -> Tensor:
        cos = F.cosine_similarity(inputs["student"], inputs["teacher"].detach(), dim=-1)
        return self.params.scale * (1 - cos).mean()


@sslkit.hookimpl
def register_losses(register) -> None:
    register("cosine_distill", CosineLoss, CosineParams)
