"""The contracts between the engine and the plugins: what each component kind receives and returns.

A training step flows through them in this order (the student-teacher loop of DINO, Caron et al.
2021, section 3.1, with iBOT's masked image modelling, Zhou et al. 2022, section 3.2):

1. ``Augmentation``: images -> :class:`Crops` (global crops crop-major, then local crops).
2. ``CropPolicy``: which global crops of the *global* batch are masked -> bool ``[n_global, G]``.
3. ``Masker``: a boolean patch mask for each selected crop -> ``[n_selected, h * w]``.
4. The plan (:mod:`sslkit.outputs`): every loss declares the tensors it needs as
   :class:`~sslkit.outputs.Output` requests; the engine runs each ``Backbone`` once per model,
   crop set and masking, the ``Head`` modules once per model on every token routed through
   them, and the registered producers of the requested kinds.
5. ``Loss``: :class:`~sslkit.outputs.StepInputs` (its declared tensors) + :class:`StepContext` -> scalar.
6. ``ParamGroupPolicy``: the optimizer's parameter groups with lr / weight-decay multipliers.

Layout conventions: a batch of ``B`` images with ``n_global`` global crops is stored
crop-major: rows ``[c * B + b]`` hold crop ``c`` of image ``b``. Local crops follow the same
rule. Masked patch tokens are always listed in the order of ``masks.nonzero()``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import torch
from torch import Tensor, nn

from sslkit.errors import SSLKitError
from sslkit.outputs import Masking, Output, StepInputs
from sslkit.state_loading import LoadResult, load_by_name
from sslkit.step_data import BackboneOutput, Crops

__all__ = ["Augmentation", "Backbone", "BackboneOutput", "BuildContext", "CropPolicy", "Crops", "Head",
           "ImageDataset", "Loss", "Masker", "Output", "ParamGroup", "ParamGroupPolicy", "StepContext", "StepInputs"]


@dataclass(frozen=True)
class BuildContext:
    """What the engine knows when it builds a component (every field may be ``None``)."""

    embed_dim: int | None = None  # backbone output width: heads' input size
    head_dims: dict[str, int] = field(default_factory=dict)  # head name -> output size K
    patch_size: int | None = None
    global_crop_size: int | None = None
    local_crop_size: int | None = None
    n_global_crops: int = 2
    n_local_crops: int = 0
    heads: tuple[str, ...] = ()  # names of the recipe's heads and student-only modules
    seed: int = 0
    epoch_length: int = 1250  # steps per epoch, to convert epoch-based settings of a component
    max_steps: int = 1000


class Backbone(nn.Module):
    """Base class of backbones: images (optionally with a patch mask) -> :class:`BackboneOutput`.

    Subclasses set ``embed_dim``, ``patch_size`` (``None`` when not a patch model),
    ``num_layers`` (transformer blocks) and what they support: ``supports_masking`` (masked patches
    replaced by a mask token), ``supports_token_dropping`` (masked patches removed from the
    sequence), ``supports_patch_tokens`` and ``supports_block_outputs`` (``blocks=``).
    """

    embed_dim: int
    patch_size: int | None = None
    num_layers: int = 0
    supports_masking: bool = False
    supports_token_dropping: bool = False
    supports_patch_tokens: bool = False
    supports_block_outputs: bool = False

    def forward(self, images: Tensor, masks: Tensor | None = None, *, masking: Masking = "replace",
                blocks: Sequence[int] = ()) -> BackboneOutput:  # pragma: no cover
        """``masks`` ``[B, N]`` (True: masked) are applied as ``masking`` says (``replace`` or ``drop``);
        ``blocks`` lists the block indices (``0 .. num_layers - 1``) whose patch outputs to return."""
        raise NotImplementedError

    def mask_only_parameters(self) -> list[str]:
        """Names (as in ``named_parameters()``) of the parameters that only a masked forward uses,
        e.g. the mask token of iBOT-style masked image modelling. The engine freezes them when no
        loss asks for masks: they would receive no gradient, which DDP cannot reduce. Default: none."""
        return []

    def load_external_weights(self, state: dict[str, Tensor], layout: str = "auto") -> LoadResult:
        """Load ``state`` (``init_from``) into this backbone and report what was loaded: by default the
        tensors whose names and shapes equal this module's; backbones that know other layouts (the
        ``vit``: DINOv2 releases, timm, Hugging Face) convert first."""
        if layout != "auto":
            raise SSLKitError(f"init_format {layout!r}: backbone {type(self).__name__} reads only its own names "
                              "(init_format: auto)")
        return load_by_name(self, state)

    def export_weights(self) -> tuple[dict[str, Tensor], dict[str, str]]:
        """Weights in the layout the wider ecosystem loads (e.g. timm's), with metadata such as
        ``{"timm_model": ...}``; by default the module's own state dict."""
        return {k: v.detach() for k, v in self.state_dict().items()}, {}

    def layer_id(self, param_name: str) -> int:
        """Layer index for layer-wise lr decay (BEiT, Bao et al. 2022, section 2.6): 0 for embeddings,
        ``i + 1`` for block ``i``, ``num_layers + 1`` for everything after the blocks."""
        return self.num_layers + 1


class Head(nn.Module):
    """Base class of projection heads and student-only modules (predictors): ``[M, D]`` tokens ->
    ``[M, K]`` outputs; ``out_dim`` is K (the input width of a module applied after this one)."""

    out_dim: int

    def frozen_for_steps(self, epoch_length: int) -> dict[str, int]:
        """Parameters (names as in ``named_parameters()``) that get learning rate 0 for their first
        steps, with the number of steps (e.g. DINO's prototype layer, frozen during the first epoch
        to stabilise training, Caron et al. 2021, appendix). Default: none."""
        return {}


@dataclass
class StepContext:
    """Per-step scalars and the batch geometry."""

    step: int
    max_steps: int
    n_global: int
    n_local: int
    batch_size: int  # images per process
    global_batch_size: int  # images over all processes
    epoch_length: int = 1250
    logging_step: bool = True  # the engine reads Loss.diagnostics() after this step; skip them otherwise


class Loss(nn.Module):
    """Base class of losses. Set ``inputs`` (name -> :class:`~sslkit.outputs.Output`) in ``__init__``.

    ``forward(inputs, ctx)`` receives exactly the declared tensors by name and returns a scalar
    tensor (the unweighted loss term); the engine multiplies it by the recipe weight. Teacher-side
    state (centers) lives in buffers so that it is checkpointed; reductions over the global batch
    go through :mod:`sslkit.distributed` so that results do not depend on the number of processes.
    ``diagnostics()`` may return cheap monitoring scalars computed during the last forward (logged
    as ``health/loss_<entry>/<key>``); the engine reads them only after steps with
    ``ctx.logging_step`` true, so a loss may skip computing them on the other steps.

    State a loss keeps across steps (an EMA center, a queue, ...) must not change in
    ``forward``: the engine may still skip the step (a non-finite term on any process, see
    ``train.max_nonfinite_steps``). ``forward`` computes the new state into a pending attribute
    and ``commit()`` makes it the state; the engine calls ``commit()`` on every loss once per
    applied step (after the optimizer step and the EMA update, on every process), never for a
    skipped step, so a skipped step leaves no trace. Collectives belong in ``forward`` (every
    process runs it), not in ``commit()``.
    """

    inputs: dict[str, Output]

    def __init__(self) -> None:
        super().__init__()
        self.inputs = {}

    def forward(self, inputs: StepInputs, ctx: StepContext) -> Tensor:  # pragma: no cover
        raise NotImplementedError

    def diagnostics(self) -> dict[str, float | Tensor]:
        return {}

    def commit(self) -> None:
        """Make the state computed by the last ``forward`` the loss's state (the step is applied)."""


@runtime_checkable
class CropPolicy(Protocol):
    """Which global crops are masked, for the whole global batch at once."""

    def select(self, n_global: int, global_batch_size: int, generator: torch.Generator) -> Tensor:
        """Return a bool tensor ``[n_global, global_batch_size]``: True where the crop is masked."""
        ...


@runtime_checkable
class Masker(Protocol):
    """Patch masks for ``n`` selected crops on a ``grid = (h, w)`` patch grid."""

    def generate(self, n: int, grid: tuple[int, int], generator: torch.Generator) -> Tensor:
        """Return a bool tensor ``[n, h * w]``: True where the patch is replaced by the mask token."""
        ...


@dataclass
class ParamGroup:
    """One optimizer parameter group and how the schedules apply to it.

    The engine sets, every step, ``lr = lr_schedule * lr_multiplier`` (0 for the first
    ``frozen_steps`` steps) and
    ``weight_decay = wd_schedule * wd_multiplier`` when ``follows_wd_schedule``; otherwise
    the group keeps ``fixed_weight_decay``.
    """

    name: str
    params: list[nn.Parameter]
    lr_multiplier: float = 1.0
    wd_multiplier: float = 1.0
    frozen_steps: int = 0
    follows_wd_schedule: bool = True
    fixed_weight_decay: float = 0.01


@runtime_checkable
class ParamGroupPolicy(Protocol):
    """Splits the student's trainable parameters into optimizer groups."""

    def groups(self, model: nn.Module) -> list[ParamGroup]:
        """``model`` has children ``backbone`` (a :class:`Backbone`), ``heads`` and ``student_modules``
        (ModuleDicts of :class:`Head`) and ``losses`` (ModuleDict of :class:`Loss`, for parameters
        a loss owns). Every trainable parameter must land in exactly one group."""
        ...


@runtime_checkable
class ImageDataset(Protocol):
    """A map-style dataset of ``(PIL.Image in RGB, label)``; label is -1 when unlabelled.

    Optionally ``epoch_order(seed) -> sslkit.data.sampler.EpochOrder | None``: the order in which the
    training loader visits the indices of each epoch (e.g. shard-local windows for sharded data); it
    must be a function of (seed, epoch) only, so that batches stay independent of the number of
    processes and workers and a resumed run continues exactly. Without it: a uniform shuffle.
    """

    classes: list[str]

    def __len__(self) -> int: ...

    def __getitem__(self, index: int) -> tuple[Any, int]: ...


@runtime_checkable
class Augmentation(Protocol):
    """Multi-crop augmentation in two stages.

    ``prepare`` runs per image in the loader workers (CPU) and returns a dict of tensors that
    the default collate stacks; ``forward`` runs on the training device on the stacked batch.
    Randomness must depend only on ``sample_seeds`` (one int64 per image, derived from the
    run seed, the step and the image's index in the global batch): never on worker or rank.
    """

    n_global: int
    n_local: int
    global_crop_size: int
    local_crop_size: int

    def prepare(self, image: Any, sample_seed: int) -> dict[str, Tensor]: ...

    def __call__(self, batch: dict[str, Tensor], sample_seeds: Tensor, device: torch.device) -> Crops: ...
