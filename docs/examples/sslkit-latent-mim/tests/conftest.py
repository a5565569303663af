"""Shared helpers: a real step view over real backbones (the public :class:`sslkit.outputs.StepView`
protocol, as the engine's producers see it) and tiny models."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence

import torch
from torch import Tensor, nn

from sslkit.components import BuildContext, Loss, StepContext
from sslkit.outputs import Output, StepInputs
from sslkit.registry import get_registry
from sslkit.step_data import BackboneOutput, Crops

EMBED, PATCH, SIDE = 32, 4, 4  # 16 px crops: a 4 x 4 grid of 16 patches
N = SIDE * SIDE


def tiny_vit(seed: int, depth: int = 2) -> nn.Module:
    """sslkit's ``vit`` backbone, small (supports masking 'drop' and block outputs)."""
    torch.manual_seed(seed)
    return get_registry().create("backbone", "vit", size="tiny", embed_dim=EMBED, depth=depth, num_heads=2,
                                 patch_size=PATCH, img_size=SIDE * PATCH, drop_path_rate=0.0)


def predictor(seed: int, depth: int = 1, **params: object) -> nn.Module:
    """A ``latent_predictor`` (width 16) for the tiny backbone, built through the registry."""
    torch.manual_seed(seed)
    return get_registry().create("head", "latent_predictor", BuildContext(embed_dim=EMBED),
                                 **{"dim": 16, "depth": depth, "num_heads": 2, **params})


def random_masks(n_crops: int, ratio: float, seed: int) -> Tensor:
    """Bool ``[n_crops, N]`` with ``round(ratio * N)`` random masked patches per crop."""
    generator = torch.Generator().manual_seed(seed)
    masks = torch.zeros(n_crops, N, dtype=torch.bool)
    for row in masks:
        row[torch.randperm(N, generator=generator)[: round(ratio * N)]] = True
    return masks


class PassView:
    """One model side of a step over real modules: backbone passes run once per (crops, masking) with
    the block indices the plan would put there (``blocks``), as :class:`sslkit.outputs.StepView`."""

    def __init__(self, side: str, modules: Mapping[str, nn.Module], images: Tensor, masks: Tensor,
                 blocks: Sequence[int] = ()) -> None:
        self.side, self._modules, self._blocks = side, modules, tuple(blocks)
        self.crops = Crops(global_crops=images, local_crops=None, n_global=2, n_local=0,
                           batch_size=images.shape[0] // 2)
        self.masks, self.masked_crops = masks, masks.any(dim=1)
        self._passes: dict[tuple[str, str], BackboneOutput] = {}

    def backbone_pass(self, model: str, crops: str, masking: str) -> BackboneOutput:
        assert model == self.side and crops == "global"
        if (crops, masking) not in self._passes:
            backbone = self._modules["backbone"]
            masks = None if masking == "none" else self.masks
            self._passes[(crops, masking)] = backbone(self.crops.global_crops, masks, masking=masking or "replace",
                                                      blocks=self._blocks)
        return self._passes[(crops, masking)]

    def module(self, model: str, name: str) -> nn.Module:
        assert model == self.side
        return self._modules[name]


def produce(request: Output, view: PassView) -> Tensor:
    """The value of ``request`` as the engine computes it: its kind's registered producer, then its heads."""
    value = get_registry().get("output", request.kind).factory(request, view)
    for head in request.heads:
        value = view.module(request.model, head)(value)
    return value


def resolve(request: Output, num_layers: int) -> Output:
    """A request as the engine's plan hands it to producers (documented in :class:`sslkit.outputs.Output`):
    ``default`` masking made concrete (``replace`` for the student's global crops of a masking step,
    ``none`` otherwise) and negative block indices counted from the end, sorted."""
    masking = request.masking
    if masking == "default":
        masking = "replace" if request.model == "student" else "none"
    blocks = tuple(sorted(b % num_layers for b in request.blocks))
    return dataclasses.replace(request, masking=masking, blocks=blocks)


def step_inputs(loss: Loss, views: Mapping[str, PassView]) -> StepInputs:
    """The loss's inputs from its resolved requests, each from its side's view."""
    values = {}
    for name, request in loss.inputs.items():
        view = views[request.model]
        values[name] = produce(resolve(request, view.module(request.model, "backbone").num_layers), view)
    return StepInputs(values)


def context(logging_step: bool = True) -> StepContext:
    return StepContext(step=0, max_steps=10, n_global=2, n_local=0, batch_size=2, global_batch_size=2,
                       logging_step=logging_step)
