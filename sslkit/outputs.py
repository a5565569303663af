"""Declared step outputs: what a loss asks the engine to compute, and the producers that compute it.

A loss lists its inputs by name, each an :class:`Output` request (which model, which crops, which
output, how masked tokens are treated, which heads are applied after it). Before the run the
engine merges the requests of every loss into a plan with the fewest model calls: one backbone
pass per (model, crop set, masking), each returning every block output any request asked for,
and one call per head and model on all the tokens any request routes through it. Each step it
hands every loss exactly the tensors it declared (:class:`StepInputs`).

What an ``Output`` of a given ``kind`` contains is defined by a **producer**: a function
``produce(request, view) -> Tensor`` registered under the kind's name through the
``register_outputs`` hook, built-in kinds included, so that a plugin adds a new kind without
changing the engine. A producer reads the step through :class:`StepView`: the crops, the masks,
the backbone passes of the plan and the models' modules.

Layout conventions (every built-in producer keeps them): rows are crop-major (row ``c * B + b``
holds crop ``c`` of image ``b``), global crops before local crops for ``crops="all"``, and
tokens selected by ``positions="masked"`` come in the order of ``masks.nonzero()``.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from torch import Tensor, nn

from sslkit.step_data import BackboneOutput, Crops

ModelSide = Literal["student", "teacher"]
CropSet = Literal["global", "local", "all"]
Masking = Literal["default", "none", "replace", "drop"]
Positions = Literal["all", "masked", "visible"]

MODEL_SIDES: tuple[str, ...] = ("student", "teacher")
CROP_SETS: tuple[str, ...] = ("global", "local", "all")
MASKINGS: tuple[str, ...] = ("default", "none", "replace", "drop")
POSITIONS: tuple[str, ...] = ("all", "masked", "visible")


@dataclass(frozen=True)
class Output:
    """One tensor a loss (or any plugin) asks the engine for; hashable, so equal requests of
    different losses are computed once.

    - ``kind``: the producer (built-in: ``cls``, ``patches``, ``registers``, ``blocks``, ``images``,
      ``masks``, ``masked_crops``, ``backbone``; plugins register more).
    - ``model``: ``student`` (with gradients) or ``teacher`` (the EMA or frozen teacher, no gradients).
    - ``crops``: ``global``, ``local`` or ``all`` (global crops first).
    - ``masking``: how the backbone pass treats the step's masked patches: ``replace`` (by the mask
      token), ``drop`` (removed from the sequence; their rows of patch outputs are zero),
      ``none``, or ``default``: ``replace`` for the student's global crops when the step masks,
      ``none`` otherwise (the iBOT / DINOv2 convention: one masked student pass serves every loss).
    - ``positions``: for token outputs, ``all`` tokens ``[C * B, N, D]``, or only the ``masked`` /
      ``visible`` patches ``[M, D]`` (``masks.nonzero()`` order).
    - ``heads``: names of heads (``model.heads``) or student-only modules (``model.student_modules``)
      applied in order to the produced tensor.
    - ``blocks``: the block indices (negative: from the end) whose patch outputs the pass returns: for
      kind ``blocks`` their mean; a plugin's producer reads them in ``BackboneOutput.blocks``.
    - ``modules``: heads or student-only modules a plugin's producer reads itself through
      ``view.module`` (so that the plan checks they exist and keeps them trainable).
    - ``options``: extra ``(key, value)`` pairs for a plugin's producer.
    """

    kind: str
    model: ModelSide = "student"
    crops: CropSet = "global"
    masking: Masking = "default"
    positions: Positions = "all"
    heads: tuple[str, ...] = ()
    blocks: tuple[int, ...] = ()
    modules: tuple[str, ...] = ()
    options: tuple[tuple[str, Any], ...] = ()

    def option(self, key: str, default: Any = None) -> Any:
        """The value of ``key`` in :attr:`options` (``default`` when absent)."""
        return dict(self.options).get(key, default)

    def describe(self) -> str:
        """A short human-readable form, used in error messages and ``sslkit recipe plan``."""
        parts = [self.model, self.crops, self.kind]
        if self.positions != "all":
            parts.append(self.positions)
        if self.masking != "default":
            parts.append(f"masking={self.masking}")
        if self.blocks:
            parts.append(f"blocks={list(self.blocks)}")
        text = " ".join(parts)
        return text + "".join(f" -> {h}" for h in self.heads)


class StepView(Protocol):
    """What a producer may read of the current step (one model side at a time)."""

    @property
    def crops(self) -> Crops:
        """The step's multi-crop views."""
        ...

    @property
    def masks(self) -> Tensor | None:
        """Bool ``[n_global * B, N]``: True for masked patches of the global crops (``None``: no masking)."""
        ...

    @property
    def masked_crops(self) -> Tensor | None:
        """Bool ``[n_global * B]``: the global crops the crop policy selected for masking."""
        ...

    def backbone_pass(self, model: str, crops: str, masking: str) -> BackboneOutput:
        """The planned pass of ``model`` over ``crops`` (``global`` or ``local``) with ``masking``
        (``none``, ``replace`` or ``drop``; ``default`` is resolved by the plan)."""
        ...

    def module(self, model: str, name: str) -> nn.Module:
        """The model's ``backbone``, a head, or a student-only module, by name."""
        ...


class Producer(Protocol):
    """Computes the tensor of one request for the step (registered through ``register_outputs``)."""

    def __call__(self, request: Output, view: StepView) -> Any: ...


class StepInputs(Mapping[str, Tensor]):
    """The tensors one loss declared, by the names it gave them (``inputs["student_cls"]``).

    Requests of kind ``backbone`` yield a module instead of a tensor: read them with :meth:`module`.
    """

    def __init__(self, values: Mapping[str, Any]) -> None:
        self._values = dict(values)

    def __getitem__(self, name: str) -> Tensor:
        if name not in self._values:
            raise KeyError(f"no input {name!r}: this loss declared {', '.join(sorted(self._values)) or 'none'}")
        value = self._values[name]
        if not isinstance(value, Tensor):
            raise TypeError(f"input {name!r} is a {type(value).__name__}: read a module with inputs.module({name!r})")
        return value

    def __contains__(self, name: object) -> bool:
        return name in self._values

    def module(self, name: str) -> nn.Module:
        """A declared request of kind ``backbone`` (a model's backbone, read-only)."""
        if name not in self._values:
            raise KeyError(f"no input {name!r}: this loss declared {', '.join(sorted(self._values)) or 'none'}")
        value = self._values[name]
        if not isinstance(value, nn.Module):
            raise TypeError(f"input {name!r} is a tensor, not a module")
        return value

    def __iter__(self) -> Iterator[str]:
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)
