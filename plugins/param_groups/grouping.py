"""Shared rules of the built-in parameter-group policies (reference section 6).

- Which parameters get no weight decay: biases, normalisation weights, LayerScale gammas and
  any other parameter with at most one dimension.
- Which parameters are the heads' last layers (frozen during the first epoch): every parameter
  of a head's ``last_layer``, including the weight-norm magnitude ``g`` ([out_dim, 1]) of a
  DINOv2 head, which also keeps weight decay multiplier 1 as in DINOv2's code (it is neither a
  bias, a norm nor a gamma, and has two dimensions).
- Merging parameters with identical optimizer settings into one group, so that a fused
  optimizer sees few, large groups.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable
from dataclasses import dataclass

from torch import nn


@dataclass(frozen=True)
class TrainableParam:
    """A trainable parameter of the student and what the policies need to know about it."""

    name: str  # full name in the student, e.g. "backbone.blocks.3.attn.qkv.weight"
    part: str  # top-level child: "backbone", "heads", "losses" (or another child's name)
    local_name: str  # name inside its component, e.g. "blocks.3.attn.qkv.weight"
    param: nn.Parameter
    no_decay: bool
    is_last_layer: bool


def is_no_decay(local_name: str, param: nn.Parameter) -> bool:
    """True for biases, norm weights, LayerScale gammas and all parameters with ndim <= 1."""
    return (
        param.ndim <= 1
        or local_name.endswith("bias")
        or "norm" in local_name
        or local_name == "gamma"
        or local_name.endswith(".gamma")
    )


def _local_name(name: str) -> tuple[str, str]:
    """Split ``part.rest`` (``heads.<head>.rest`` / ``losses.<loss>.rest``) into part and rest."""
    part, _, rest = name.partition(".")
    if part in ("heads", "losses") and "." in rest:
        rest = rest.partition(".")[2]
    return part, rest


def _last_layer(head: nn.Module) -> nn.Module | None:
    """The head's ``last_layer``: the registered submodule (which the class-level default
    ``Head.last_layer = None`` would hide from plain attribute access) or the attribute."""
    children = dict(head.named_children())
    return children["last_layer"] if "last_layer" in children else getattr(head, "last_layer", None)


def trainable_params(model: nn.Module) -> list[TrainableParam]:
    """The student's parameters with ``requires_grad``, each once, in registration order."""
    last_layer_ids: set[int] = set()
    heads = getattr(model, "heads", None)
    for head in heads.values() if heads is not None else ():
        last_layer = _last_layer(head)
        if last_layer is not None:
            last_layer_ids.update(id(p) for p in last_layer.parameters())
    result = []
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        part, local = _local_name(name)
        result.append(TrainableParam(name, part, local, param, is_no_decay(local, param), id(param) in last_layer_ids))
    return result


def merge(
    entries: Iterable[tuple[Hashable, Hashable, nn.Parameter]],
) -> list[tuple[Hashable, list[Hashable], list[nn.Parameter]]]:
    """Group ``(key, label, param)`` entries by key, in order of first appearance.

    Returns ``(key, distinct labels in order, params)`` per key; the caller names the group
    from its labels.
    """
    groups: dict[Hashable, tuple[list[Hashable], list[nn.Parameter]]] = {}
    for key, label, param in entries:
        labels, params = groups.setdefault(key, ([], []))
        if label not in labels:
            labels.append(label)
        params.append(param)
    return [(key, labels, params) for key, (labels, params) in groups.items()]
