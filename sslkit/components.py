"""The contracts between the engine and the plugins: what each component kind receives and returns.

A training step flows through them in this order (reference section 1):

1. ``Augmentation``: images -> :class:`Crops` (global crops crop-major, then local crops).
2. ``CropPolicy``: which global crops of the *global* batch are masked -> bool ``[n_global, G]``.
3. ``Masker``: a boolean patch mask for each selected crop -> ``[n_selected, h * w]``.
4. ``Backbone`` (teacher: global crops unmasked; student: all crops, global crops masked)
   -> :class:`BackboneOutput`.
5. ``Head``: tokens ``[M, D]`` -> logits ``[M, K]``; the engine calls each head once per side
   for every token any loss asked of it.
6. ``Loss``: :class:`StepOutputs` + :class:`StepContext` -> scalar.
7. ``ParamGroupPolicy``: the optimizer's parameter groups with lr / weight-decay multipliers.

Layout conventions: a batch of ``B`` images with ``n_global`` global crops is stored
crop-major: rows ``[c * B + b]`` hold crop ``c`` of image ``b``. Local crops follow the same
rule. Masked patch tokens are always listed in the order of ``masks.nonzero()``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import torch
from torch import Tensor, nn


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
    heads: tuple[str, ...] = ()  # names of the recipe's heads, for losses that reference one
    seed: int = 0


@dataclass
class Crops:
    """The multi-crop views of one (per-process) batch, crop-major, normalised float tensors."""

    global_crops: Tensor  # [n_global * B, 3, H, W]
    local_crops: Tensor | None  # [n_local * B, 3, h, w] or None when n_local == 0
    n_global: int
    n_local: int
    batch_size: int


@dataclass
class BackboneOutput:
    """Backbone features after the final norm.

    ``cls``: ``[M, D]``; ``patches``: ``[M, N, D]`` (``None`` for models without patch tokens);
    ``registers``: ``[M, R, D]`` or ``None``.
    """

    cls: Tensor
    patches: Tensor | None = None
    registers: Tensor | None = None


class Backbone(nn.Module):
    """Base class of backbones: images (optionally with a patch mask) -> :class:`BackboneOutput`.

    Subclasses set ``embed_dim``, ``patch_size`` (``None`` when not a patch model),
    ``num_layers`` (transformer blocks), ``supports_masking`` and ``supports_patch_tokens``.
    """

    embed_dim: int
    patch_size: int | None = None
    num_layers: int = 0
    supports_masking: bool = False
    supports_patch_tokens: bool = False

    def forward(self, images: Tensor, masks: Tensor | None = None) -> BackboneOutput:  # pragma: no cover
        raise NotImplementedError

    def mask_only_parameters(self) -> list[str]:
        """Names (as in ``named_parameters()``) of the parameters that only a masked forward uses,
        e.g. the mask token of iBOT-style masked image modelling. The engine freezes them when no
        loss asks for masks: they would receive no gradient, which DDP cannot reduce. Default: none."""
        return []

    def export_weights(self) -> tuple[dict[str, Tensor], dict[str, str]]:
        """Weights in the layout the wider ecosystem loads (e.g. timm's), with metadata such as
        ``{"timm_model": ...}``; by default the module's own state dict."""
        return {k: v.detach() for k, v in self.state_dict().items()}, {}

    def layer_id(self, param_name: str) -> int:
        """Layer index for layer-wise lr decay (reference section 6): 0 for embeddings,
        ``i + 1`` for block ``i``, ``num_layers + 1`` for everything after the blocks."""
        return self.num_layers + 1


class Head(nn.Module):
    """Base class of projection heads: ``[M, D]`` tokens -> ``[M, K]`` logits.

    ``out_dim`` is K; ``last_layer`` is the prototype layer frozen during the first epoch.
    """

    out_dim: int
    last_layer: nn.Module | None  # set in __init__ (a class default would hide the submodule)


@dataclass(frozen=True)
class LossNeeds:
    """What a loss asks the engine to compute this step (everything else is skipped)."""

    cls_head: str | None = None  # head applied to CLS tokens: student all crops, teacher global crops
    masked_patch_head: str | None = None  # head applied to masked patch tokens (student and teacher)
    local_crops: bool = False  # student forward on local crops
    masks: bool = False  # masked student forward on the selected global crops
    patch_tokens: bool = False  # backbone patch tokens of the global crops (student and teacher)


@dataclass
class StepContext:
    """Per-step scalars from the engine's schedules and the batch geometry."""

    step: int
    max_steps: int
    teacher_temp: float
    n_global: int
    n_local: int
    batch_size: int  # images per process
    global_batch_size: int  # images over all processes
    epoch_length: int = 1250
    teacher_backbone: nn.Module | None = None  # the EMA teacher's backbone (read-only; e.g. Gram anchoring)
    logging_step: bool = True  # the engine reads Loss.diagnostics() after this step; skip them otherwise


@dataclass
class StepOutputs:
    """Everything the engine computed for the losses of one step (fields a loss did not
    ask for are ``None`` or empty).

    ``student_cls_logits[h]``: ``[(n_global + n_local) * B, K]`` (global crops first);
    ``teacher_cls_logits[h]``: ``[n_global * B, K]``;
    ``student_masked_logits[h]`` / ``teacher_masked_logits[h]``: ``[M, K]`` for the masked
    patches in ``masks.nonzero()`` order; ``masks``: ``[n_global * B, N]`` bool;
    ``masked_crops``: ``[n_global * B]`` bool (the crop policy's selection).
    """

    student_global: BackboneOutput
    teacher_global: BackboneOutput
    student_local: BackboneOutput | None = None
    masks: Tensor | None = None
    masked_crops: Tensor | None = None
    student_cls_logits: dict[str, Tensor] = field(default_factory=dict)
    teacher_cls_logits: dict[str, Tensor] = field(default_factory=dict)
    student_masked_logits: dict[str, Tensor] = field(default_factory=dict)
    teacher_masked_logits: dict[str, Tensor] = field(default_factory=dict)
    crops: Crops | None = None  # the step's crops, for losses that run a model of their own


class Loss(nn.Module):
    """Base class of losses. Set ``needs`` (a :class:`LossNeeds`) in ``__init__``.

    ``forward(out, ctx)`` returns a scalar tensor (the unweighted loss term); the engine
    multiplies it by the recipe weight. Teacher-side state (centers) lives in buffers so
    that it is checkpointed; reductions over the global batch go through
    :mod:`sslkit.distributed` so that results do not depend on the number of processes.
    ``diagnostics()`` may return cheap monitoring scalars computed during the last forward; the
    engine reads them only after steps with ``ctx.logging_step`` true, so a loss may skip
    computing them on the other steps.

    State a loss keeps across steps (an EMA center, a queue, ...) must not change in
    ``forward``: the engine may still skip the step (a non-finite term on any process, see
    ``train.max_nonfinite_steps``). ``forward`` computes the new state into a pending attribute
    and ``commit()`` makes it the state; the engine calls ``commit()`` on every loss once per
    applied step (after the optimizer step and the EMA update, on every process), never for a
    skipped step, so a skipped step leaves no trace. Collectives belong in ``forward`` (every
    process runs it), not in ``commit()``.
    """

    needs: LossNeeds = LossNeeds()

    def forward(self, out: StepOutputs, ctx: StepContext) -> Tensor:  # pragma: no cover
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

    The engine sets, every step, ``lr = lr_schedule * lr_multiplier`` (0 while
    ``is_last_layer`` and the last layer is frozen) and
    ``weight_decay = wd_schedule * wd_multiplier`` when ``follows_wd_schedule``; otherwise
    the group keeps ``fixed_weight_decay``.
    """

    name: str
    params: list[nn.Parameter]
    lr_multiplier: float = 1.0
    wd_multiplier: float = 1.0
    is_last_layer: bool = False
    follows_wd_schedule: bool = True
    fixed_weight_decay: float = 0.01


@runtime_checkable
class ParamGroupPolicy(Protocol):
    """Splits the student's trainable parameters into optimizer groups."""

    def groups(self, model: nn.Module) -> list[ParamGroup]:
        """``model`` has children ``backbone`` (a :class:`Backbone`), ``heads`` (ModuleDict of
        :class:`Head`) and ``losses`` (ModuleDict of :class:`Loss`, for loss parameters such
        as prototypes). Every trainable parameter must land in exactly one group."""
        ...


@runtime_checkable
class ImageDataset(Protocol):
    """A map-style dataset of ``(PIL.Image in RGB, label)``; label is -1 when unlabelled."""

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
