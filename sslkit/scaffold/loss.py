"""Template of a loss plugin: cosine distillation between student and teacher CLS tokens,
with its tests (formula, loss contract, registration, a few training steps)."""

from __future__ import annotations

from typing import Any

USAGE = '''\
```yaml
losses:
  dino: {name: dino, weight: 1.0, head: dino}
  $name: {name: $name, weight: 0.5, cross_view: true, local_crops: false}
```'''



def add_to_recipe(recipe: dict[str, Any], name: str) -> None:
    """Train the loss next to the recipe's DINO loss."""
    recipe["losses"][name] = {"name": name, "weight": 0.5}


MODULE = '''\
"""The ``$name`` loss: cosine distillation of the teacher's backbone CLS tokens.

For every image ``b`` and every pair of distinct global crops ``(c, c')``::

    1 - cos(student_cls[c * B + b], teacher_cls[c' * B + b])

averaged over all pairs: the student predicts, from one view, the teacher's features of
another view of the same image (DINO's cross-view prediction, on features instead of head
outputs). With ``cross_view: false`` each crop is compared with the same crop. With
``local_crops: true``, every local crop is also compared with each teacher global crop of its
image (the loss then asks the engine for the student's CLS tokens of all crops).

The loss declares what it reads in ``self.inputs`` (``sslkit.outputs.Output`` requests); the
engine computes exactly those and hands them to ``forward`` by name. Rows are crop-major
(``sslkit.outputs``): row ``c * B + b`` is crop ``c`` of image ``b``, global crops first.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from sslkit.components import BuildContext, Loss, Output, StepContext, StepInputs
from sslkit.params import param
from torch import Tensor


@dataclass
class ${cls}Params:
    """Parameters of the ``$name`` loss (every field: default, documentation, bounds)."""

    cross_view: bool = param(
        True, "Compare each student global crop with the teacher's other global crops (true) or with the "
              "same crop (false).")
    local_crops: bool = param(
        False, "Also compare every local crop with each teacher global crop of its image.")
    eps: float = param(1e-8, "Epsilon of the L2 normalisation.", gt=0.0)


class $cls(Loss):
    """1 - cosine similarity between student and teacher backbone CLS tokens of the same image,
    averaged over (student crop, teacher crop) pairs."""

    def __init__(self, params: ${cls}Params, ctx: BuildContext) -> None:
        super().__init__()
        self.params = params
        # What the engine must compute for this loss: backbone CLS tokens, the student's of every
        # crop it compares (global crops first), the teacher's of the global crops.
        self.inputs = {
            "student": Output("cls", model="student", crops="all" if params.local_crops else "global"),
            "teacher": Output("cls", model="teacher", crops="global"),
        }

    def _crops(self, cls_tokens: Tensor, n_crops: int, batch_size: int) -> Tensor:
        """``[n_crops * B, D]`` -> L2-normalised ``[n_crops, B, D]`` in float32."""
        features = F.normalize(cls_tokens.float(), dim=-1, eps=self.params.eps)
        return features.reshape(n_crops, batch_size, -1)

    def forward(self, inputs: StepInputs, ctx: StepContext) -> Tensor:
        p = self.params
        n_global_rows = ctx.n_global * ctx.batch_size
        teacher = self._crops(inputs["teacher"].detach(), ctx.n_global, ctx.batch_size)
        student = self._crops(inputs["student"][:n_global_rows], ctx.n_global, ctx.batch_size)
        similarity = torch.einsum("sbd,tbd->stb", student, teacher)  # [student crop, teacher crop, image]
        same_crop = torch.eye(ctx.n_global, dtype=torch.bool, device=similarity.device)
        pairs = ~same_crop if p.cross_view and ctx.n_global > 1 else same_crop
        distances = [1.0 - similarity[pairs]]
        if p.local_crops and ctx.n_local:
            local = self._crops(inputs["student"][n_global_rows:], ctx.n_local, ctx.batch_size)
            distances.append((1.0 - torch.einsum("lbd,tbd->ltb", local, teacher)).flatten(0, 1))
        return torch.cat(distances).mean()
'''

TEST = '''\
"""Tests of the ``$name`` loss with sslkit's plugin test kit (``sslkit.testing``)."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
from sslkit.components import BuildContext
from sslkit.recipe import load_recipe
from sslkit.registry import get_registry
from sslkit.testing import RandomStep, assert_loss_contract, run_tiny_training

from $package.$module import $cls, ${cls}Params


def naive_loss(inputs, ctx, cross_view: bool, local_crops: bool) -> float:
    """The formula of the module doc, with explicit loops over images and crop pairs."""

    def cos(a, b) -> float:
        return float((a @ b) / (a.norm() * b.norm()))

    batch, distances = ctx.batch_size, []
    rows = inputs["student"].detach()  # global crops, then local crops
    student, teacher, local = rows[: ctx.n_global * batch], inputs["teacher"], rows[ctx.n_global * batch :]
    for b in range(batch):
        for s in range(ctx.n_global):
            for t in range(ctx.n_global):
                if (s != t) == cross_view:
                    distances.append(1 - cos(student[s * batch + b], teacher[t * batch + b]))
        if local_crops:
            for s in range(ctx.n_local):
                for t in range(ctx.n_global):
                    distances.append(1 - cos(local[s * batch + b], teacher[t * batch + b]))
    return sum(distances) / len(distances)


@pytest.mark.parametrize(("cross_view", "local_crops"), [(True, False), (False, False), (True, True)])
def test_matches_the_formula(cross_view: bool, local_crops: bool) -> None:
    step = RandomStep(batch_size=3, n_global=2, n_local=2, embed_dim=8, seed=1)  # random, well-formed inputs
    loss = $cls(${cls}Params(cross_view=cross_view, local_crops=local_crops), BuildContext())
    inputs, ctx = step.inputs(loss), step.context()
    assert loss(inputs, ctx).item() == pytest.approx(naive_loss(inputs, ctx, cross_view, local_crops), rel=1e-5)


@pytest.mark.parametrize("local_crops", [False, True])
def test_follows_the_loss_contract(local_crops: bool) -> None:
    step = RandomStep(batch_size=4, n_global=2, n_local=2)
    loss = $cls(${cls}Params(local_crops=local_crops), BuildContext())
    check = assert_loss_contract(loss, step.inputs(loss), step.context())
    assert check.received_gradient("student")
    local_rows = check.grads["student"][2 * 4 :]  # the student's local-crop rows follow its global ones
    assert (local_rows.numel() > 0 and bool(local_rows.abs().sum() > 0)) == local_crops


def test_example_recipe_is_valid() -> None:
    recipe = Path(__file__).resolve().parents[1] / "recipes" / "${name}_tiny.yaml"
    resolved = load_recipe(recipe)
    assert resolved.spec("losses.$name").component.name == "$name"


def test_is_registered_by_this_distribution() -> None:
    component = get_registry().get("loss", "$name")
    assert component.provider.distribution == "$dist"
    assert component.params is ${cls}Params


def test_trains_next_to_the_dino_loss(tmp_path) -> None:
    losses = {"$name": {"name": "$name", "weight": 1.0}}
    result = run_tiny_training(tmp_path, losses=losses, steps=2)
    assert result.completed and result.step == 2
    assert math.isfinite(result.final_losses["$name"])
'''
