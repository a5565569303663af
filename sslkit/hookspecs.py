"""The plugin contract: one hook per component kind, each receiving a ``register`` callback.

A plugin module implements any of these hooks and calls ``register`` once per component::

    import sslkit

    @sslkit.hookimpl
    def register_losses(register):
        register("my_loss", MyLoss, MyLossParams, summary="What it computes.")

``register(name, factory, params, summary=None)``: ``factory(params, ctx)`` builds the
component from a validated instance of the ``params`` dataclass and a
:class:`sslkit.components.BuildContext`; ``summary`` defaults to the first line of the
factory's docstring.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

import pluggy

hookspec = pluggy.HookspecMarker("sslkit")


class Register(Protocol):
    """The callback each hook receives: ``register(name, factory, params, summary=None)``.

    ``name``: an identifier, unique per component kind; ``factory(params, ctx)``: builds the
    component from a validated instance of the ``params`` dataclass and a
    :class:`sslkit.components.BuildContext` (for output kinds: a producer
    ``produce(request, view)``, see :mod:`sslkit.outputs`); ``summary``: one line for
    ``sslkit plugins`` (default: the first line of the factory's docstring).
    """

    def __call__(self, name: str, factory: Callable[..., Any], params: type,
                 summary: str | None = None) -> None: ...


@hookspec
def register_backbones(register: Register) -> None:
    """Register backbone factories (return a :class:`sslkit.components.Backbone`)."""


@hookspec
def register_heads(register: Register) -> None:
    """Register projection-head factories (return a :class:`sslkit.components.Head`)."""


@hookspec
def register_losses(register: Register) -> None:
    """Register loss factories (return a :class:`sslkit.components.Loss`)."""


@hookspec
def register_maskers(register: Register) -> None:
    """Register masker factories (return a :class:`sslkit.components.Masker`)."""


@hookspec
def register_crop_policies(register: Register) -> None:
    """Register crop-selection policies (return a :class:`sslkit.components.CropPolicy`)."""


@hookspec
def register_param_groups(register: Register) -> None:
    """Register optimizer-grouping policies (return a :class:`sslkit.components.ParamGroupPolicy`)."""


@hookspec
def register_datasets(register: Register) -> None:
    """Register dataset factories (return a :class:`sslkit.components.ImageDataset`)."""


@hookspec
def register_augmentations(register: Register) -> None:
    """Register multi-crop augmentation factories (return a :class:`sslkit.components.Augmentation`)."""


@hookspec
def register_outputs(register: Register) -> None:
    """Register step-output producers: ``produce(request, view)`` computes the tensor of an
    :class:`sslkit.outputs.Output` request of this kind (``params`` is the dataclass of the
    request's ``options``)."""


#: Component kind -> hook name. The order is the order of ``sslkit plugins`` output.
KIND_HOOKS: dict[str, str] = {
    "backbone": "register_backbones",
    "head": "register_heads",
    "loss": "register_losses",
    "masker": "register_maskers",
    "crop_policy": "register_crop_policies",
    "param_groups": "register_param_groups",
    "dataset": "register_datasets",
    "augmentation": "register_augmentations",
    "output": "register_outputs",
}
