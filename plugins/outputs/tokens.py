"""The built-in token producers: backbone outputs of the planned passes, by request.

``cls`` ``[C * B, D]``, ``patches`` ``[C * B, N, D]``, ``registers`` ``[C * B, R, D]`` and ``blocks``
(the mean of the requested blocks' patch outputs, ``[C * B, N, D]``, before the final norm: the
regression targets of data2vec, Baevski et al. 2022, section 3.3, average the top ``K`` blocks),
for ``crops`` ``global``, ``local`` or ``all`` (global rows first). ``positions`` ``masked`` /
``visible`` keep the masked / unmasked patches of the global crops, ``[M, D]`` in
``masks.nonzero()`` order.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from sslkit.outputs import Output, StepView
from sslkit.step_data import BackboneOutput


@dataclass
class NoOptions:
    """The built-in output kinds take no options."""


def planned_passes(request: Output, view: StepView) -> list[BackboneOutput]:
    """The passes a request reads: its global and/or local crop passes (local crops are never masked)."""
    parts = []
    if request.crops in ("global", "all"):
        parts.append(view.backbone_pass(request.model, "global", request.masking))
    if request.crops in ("local", "all"):
        parts.append(view.backbone_pass(request.model, "local", "none"))
    return parts


def select_positions(tokens: Tensor, request: Output, view: StepView) -> Tensor:
    """All tokens ``[C * B, N, D]``, or the masked / visible ones ``[M, D]`` of the global crops."""
    if request.positions == "all":
        return tokens
    masks = view.masks
    if masks is None:
        raise ValueError(f"{request.describe()}: the step has no masks")
    return tokens[masks] if request.positions == "masked" else tokens[~masks]


def _required(value: Tensor | None, what: str, request: Output) -> Tensor:
    if value is None:
        raise ValueError(f"{request.describe()}: the backbone returned no {what}")
    return value


def produce_cls(request: Output, view: StepView) -> Tensor:
    """The CLS tokens after the final norm."""
    parts = [p.cls for p in planned_passes(request, view)]
    return parts[0] if len(parts) == 1 else torch.cat(parts)


def produce_patches(request: Output, view: StepView) -> Tensor:
    """The patch tokens after the final norm (all, masked or visible positions)."""
    parts = [_required(p.patches, "patch tokens", request) for p in planned_passes(request, view)]
    return select_positions(parts[0] if len(parts) == 1 else torch.cat(parts), request, view)


def produce_registers(request: Output, view: StepView) -> Tensor:
    """The register tokens after the final norm."""
    parts = [_required(p.registers, "register tokens", request) for p in planned_passes(request, view)]
    return parts[0] if len(parts) == 1 else torch.cat(parts)


def produce_blocks(request: Output, view: StepView) -> Tensor:
    """The mean of the requested blocks' patch outputs (indices already resolved by the plan)."""
    parts = []
    for p in planned_passes(request, view):
        parts.append(torch.stack([p.blocks[i] for i in request.blocks]).mean(dim=0))
    return select_positions(parts[0] if len(parts) == 1 else torch.cat(parts), request, view)
