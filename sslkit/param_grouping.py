"""Rules that parameter-group policies share, built-in and third-party alike (DINOv2, Oquab et al. 2023,
appendix: optimizer settings; DINO, Caron et al. 2021, appendix: the frozen prototype layer).

- Which parameters get no weight decay: biases, normalisation weights, LayerScale gammas and
  any other parameter with at most one dimension.
- Which parameters get lr 0 for their first steps: those that a head or a student-only module
  names in :meth:`~sslkit.components.Head.frozen_for_steps` (e.g. every parameter of the DINO
  head's prototype layer, including the weight-norm magnitude ``g`` ([out_dim, 1]) of a DINOv2
  head, which also keeps weight decay multiplier 1 as in DINOv2's code: it is neither a bias, a
  norm nor a gamma, and has two dimensions).
- Merging parameters with identical optimizer settings (frozen steps included) into one group,
  so that a fused optimizer sees few, large groups.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable
from dataclasses import dataclass
from typing import TypeVar

from torch import nn

from sslkit.components import Head
from sslkit.errors import SSLKitError

K = TypeVar("K", bound=Hashable)  # a group key: the group's optimizer settings
L = TypeVar("L")  # a label the caller names the group from

#: the student's children whose modules may freeze parameters (``Head.frozen_for_steps``)
FREEZING_PARTS = ("heads", "student_modules")


@dataclass(frozen=True)
class TrainableParam:
    """A trainable parameter of the student and what the policies need to know about it."""

    name: str  # full name in the student, e.g. "backbone.blocks.3.attn.qkv.weight"
    part: str  # top-level child: "backbone", "heads", "student_modules", "losses" (or another child's name)
    local_name: str  # name inside its component, e.g. "blocks.3.attn.qkv.weight"
    param: nn.Parameter
    no_decay: bool
    frozen_steps: int  # lr 0 for this many first steps (0: never frozen)


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
    """Split ``part.rest`` (``heads.<head>.rest``, ``student_modules.<module>.rest``, ``losses.<loss>.rest``)
    into part and rest."""
    part, _, rest = name.partition(".")
    if part in ("heads", "student_modules", "losses") and "." in rest:
        rest = rest.partition(".")[2]
    return part, rest


def frozen_steps(model: nn.Module, epoch_length: int) -> dict[int, int]:
    """``id(parameter) -> steps`` for every parameter a head or student-only module of ``model``
    freezes (:meth:`~sslkit.components.Head.frozen_for_steps` with ``epoch_length`` steps per epoch)."""
    found: dict[int, int] = {}
    for part in FREEZING_PARTS:
        modules = getattr(model, part, None)
        for module_name, module in modules.items() if modules is not None else ():
            if not isinstance(module, Head):
                continue
            params = dict(module.named_parameters())
            for name, steps in module.frozen_for_steps(epoch_length).items():
                if name not in params:
                    raise SSLKitError(
                        f"{part}.{module_name} ({type(module).__name__}): frozen_for_steps() names {name!r}, which is "
                        f"not one of its parameters (named_parameters(): {', '.join(list(params)[:8])}...)")
                found[id(params[name])] = int(steps)
    return found


def trainable_params(model: nn.Module, epoch_length: int) -> list[TrainableParam]:
    """The student's parameters with ``requires_grad``, each once, in registration order, with the
    steps for which their module freezes them (``epoch_length``: steps per epoch)."""
    frozen = frozen_steps(model, epoch_length)
    result = []
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        part, local = _local_name(name)
        result.append(TrainableParam(name, part, local, param, is_no_decay(local, param), frozen.get(id(param), 0)))
    return result


def merge(entries: Iterable[tuple[K, L, nn.Parameter]]) -> list[tuple[K, list[L], list[nn.Parameter]]]:
    """Group ``(key, label, param)`` entries by key, in order of first appearance.

    Returns ``(key, distinct labels in order, params)`` per key; the caller names the group
    from its labels. Keys must be hashable; labels are compared with ``==``.
    """
    groups: dict[K, tuple[list[L], list[nn.Parameter]]] = {}
    for key, label, param in entries:
        labels, params = groups.setdefault(key, ([], []))
        if label not in labels:
            labels.append(label)
        params.append(param)
    return [(key, labels, params) for key, (labels, params) in groups.items()]
