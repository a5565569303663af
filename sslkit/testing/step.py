"""Random but well-formed :class:`~sslkit.outputs.StepInputs` and :class:`~sslkit.components.StepContext`
for unit tests of loss plugins.

:class:`RandomStep` is one random training step; it answers any built-in
:class:`~sslkit.outputs.Output` request from the same underlying draws, so that several requests
agree with each other as the engine's would: the student's ``cls`` of ``crops="all"`` starts with
the rows of its ``crops="global"`` request, the ``masked`` patches are the rows of the ``all``
patches selected by the ``masks`` request, a teacher tensor is the student's tensor of the same
kind, crops, positions and heads plus ``teacher_noise * N(0, 1)``. :func:`make_step_inputs` builds
the inputs one loss declares.

Layout (:mod:`sslkit.outputs`): crop-major rows (row ``c * B + b``: crop ``c`` of image ``b``),
global crops before local crops, masked tokens in ``masks.nonzero()`` order. Student tensors are
fresh leaves with ``requires_grad=True`` (a test reads their ``.grad`` after ``backward``); teacher
tensors have no gradient. A request with ``heads`` gets head outputs of the size of its last head
(``head_dims``) instead of backbone features; no module is run.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor, nn

from sslkit.components import Crops, Loss, StepContext
from sslkit.outputs import Output, StepInputs

_TOKEN_KINDS = ("cls", "patches", "registers", "blocks")


def _draw_masks(n_crops: int, n_patches: int, mask_ratio: float, mask_probability: float,
                generator: torch.Generator) -> tuple[Tensor, Tensor]:
    """``masked_crops`` ``[n_crops]`` (each crop selected with ``mask_probability``, at least one when
    ``mask_probability > 0``) and ``masks`` ``[n_crops, n_patches]`` with ``round(ratio * N)``
    (at least 1) random patches of each selected crop."""
    selected = torch.rand(n_crops, generator=generator) < mask_probability
    if mask_probability > 0 and not selected.any():
        selected[torch.randint(n_crops, (1,), generator=generator)] = True
    masks = torch.zeros(n_crops, n_patches, dtype=torch.bool)
    if mask_ratio <= 0:
        return torch.zeros_like(selected), masks
    count = max(1, round(mask_ratio * n_patches))
    for crop in selected.nonzero().flatten().tolist():
        masks[crop, torch.randperm(n_patches, generator=generator)[:count]] = True
    return selected, masks


class RandomStep:
    """One random step: ``batch_size`` images, each with ``n_global`` global crops of ``grid * patch_size``
    pixels (``grid**2`` patches) and ``n_local`` local crops of ``local_grid * patch_size`` pixels.

    Each global crop is selected for masking with ``mask_probability`` (at least one crop when
    positive) and then has ``round(mask_ratio * grid**2)`` masked patches. ``head_dims`` maps head
    (and student-only module) names to their output sizes; ``modules`` maps ``student`` /
    ``teacher`` to the backbone module a ``backbone`` request returns.
    """

    def __init__(self, *, batch_size: int = 4, n_global: int = 2, n_local: int = 2, embed_dim: int = 32,
                 head_dims: Mapping[str, int] | None = None, grid: int = 4, local_grid: int = 2, patch_size: int = 4,
                 n_registers: int = 0, mask_ratio: float = 0.5, mask_probability: float = 0.5,
                 teacher_noise: float = 0.5, seed: int = 0, modules: Mapping[str, nn.Module] | None = None,
                 device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32) -> None:
        self.batch_size, self.n_global, self.n_local, self.embed_dim = batch_size, n_global, n_local, embed_dim
        self.head_dims = dict(head_dims or {})
        self.grid, self.local_grid, self.n_registers = grid, local_grid, n_registers
        self.teacher_noise, self.seed = teacher_noise, seed
        self.modules = dict(modules or {})
        self.device, self.dtype = device, dtype
        generator = torch.Generator().manual_seed(seed)
        masked_crops, masks = _draw_masks(n_global * batch_size, grid * grid, mask_ratio, mask_probability, generator)
        self.masks, self.masked_crops = masks.to(device), masked_crops.to(device)
        side, local_side = grid * patch_size, local_grid * patch_size
        self.crops = Crops(
            global_crops=self._float(torch.randn(n_global * batch_size, 3, side, side, generator=generator)),
            local_crops=(self._float(torch.randn(n_local * batch_size, 3, local_side, local_side, generator=generator))
                         if n_local else None),
            n_global=n_global, n_local=n_local, batch_size=batch_size)
        self._draws: dict[tuple[Any, ...], Tensor] = {}

    def _float(self, tensor: Tensor) -> Tensor:
        return tensor.to(device=self.device, dtype=self.dtype)

    def _draw(self, key: tuple[Any, ...], shape: tuple[int, ...]) -> Tensor:
        """A standard normal tensor, the same for the same key (seeded by the step's seed and the key)."""
        if key not in self._draws:
            digest = hashlib.sha256(repr((self.seed, key)).encode()).digest()
            generator = torch.Generator().manual_seed(int.from_bytes(digest[:8], "little") >> 1)
            self._draws[key] = self._float(torch.randn(shape, generator=generator))
        return self._draws[key]

    def _width(self, request: Output) -> int:
        if not request.heads:
            return self.embed_dim
        head = request.heads[-1]
        if head not in self.head_dims:
            raise AssertionError(f"{request.describe()}: the output size of {head!r} is unknown; pass "
                                 f"head_dims={{{head!r}: K}}")
        return self.head_dims[head]

    def _tokens(self, request: Output, crops: str) -> Tensor:
        """The student's values of a token request for one crop set (``global`` / ``local``), without grad."""
        rows = (self.n_global if crops == "global" else self.n_local) * self.batch_size
        patches = (self.grid if crops == "global" else self.local_grid) ** 2
        if request.kind == "registers" and not self.n_registers:
            raise AssertionError(f"{request.describe()}: build the step with n_registers >= 1")
        shape = {"cls": (rows,), "patches": (rows, patches), "blocks": (rows, patches),
                 "registers": (rows, self.n_registers)}[request.kind]
        key = ("student", request.kind, crops, request.heads, request.blocks)
        values = self._draw(key, (*shape, self._width(request)))
        if request.model == "teacher":
            values = values + self.teacher_noise * self._draw(("teacher", *key[1:]), values.shape)
        if request.kind in ("patches", "blocks") and request.masking == "drop" and crops == "global":
            values = values.masked_fill(self.masks.unsqueeze(-1), 0.0)
        return values

    def value(self, request: Output) -> Any:
        """The tensor (or, for kind ``backbone``, the module) the engine would hand for ``request``."""
        if request.kind == "masks":
            return self.masks.clone()
        if request.kind == "masked_crops":
            return self.masked_crops.clone()
        if request.kind == "images":
            images = self.crops.global_crops if request.crops == "global" else self.crops.local_crops
            if images is None or request.crops == "all":
                raise AssertionError(f"{request.describe()}: images of one crop set with n_local >= 1 for local")
            return images.clone()
        if request.kind == "backbone":
            if request.model not in self.modules:
                raise AssertionError(f"{request.describe()}: pass modules={{{request.model!r}: <backbone>}}")
            return self.modules[request.model]
        if request.kind not in _TOKEN_KINDS:
            raise AssertionError(f"{request.describe()}: RandomStep makes the built-in kinds only; build the "
                                 f"StepInputs of a plugin's kind {request.kind!r} yourself")
        sets = {"global": ("global",), "local": ("local",), "all": ("global", "local")}[request.crops]
        if "local" in sets and not self.n_local:
            raise AssertionError(f"{request.describe()}: build the step with n_local >= 1")
        parts = [self._tokens(request, crops) for crops in sets]
        if len({p.shape[1:] for p in parts}) > 1:
            raise AssertionError(f"{request.describe()}: global and local crops have different patch counts")
        values = torch.cat(parts) if len(parts) > 1 else parts[0]
        if request.positions != "all":
            values = values[self.masks] if request.positions == "masked" else values[~self.masks]
        values = values.detach().clone()
        return values.requires_grad_(True) if request.model == "student" else values

    def inputs(self, loss: Loss) -> StepInputs:
        """The inputs ``loss`` declares (``loss.inputs``), by name."""
        return StepInputs({name: self.value(request) for name, request in loss.inputs.items()})

    def context(self, *, step: int = 0, max_steps: int = 100, epoch_length: int = 100, world_size: int = 1,
                logging_step: bool = True) -> StepContext:
        """The step context of this step's geometry (``world_size`` scales ``global_batch_size``)."""
        return make_step_context(step=step, max_steps=max_steps, epoch_length=epoch_length,
                                 batch_size=self.batch_size, n_global=self.n_global, n_local=self.n_local,
                                 world_size=world_size, logging_step=logging_step)


def make_step_inputs(loss: Loss, *, batch_size: int = 4, n_global: int = 2, n_local: int = 2, embed_dim: int = 32,
                     head_dims: Mapping[str, int] | None = None, grid: int = 4, local_grid: int = 2,
                     patch_size: int = 4, n_registers: int = 0, mask_ratio: float = 0.5,
                     mask_probability: float = 0.5, teacher_noise: float = 0.5, seed: int = 0,
                     modules: Mapping[str, nn.Module] | None = None, device: torch.device | str = "cpu",
                     dtype: torch.dtype = torch.float32) -> StepInputs:
    """Random inputs of ``loss`` for one step (see :class:`RandomStep` for the arguments); pair them
    with ``make_step_context(batch_size=..., n_global=..., n_local=...)`` of the same geometry, or use
    ``RandomStep(...).inputs(loss)`` and ``.context()``."""
    step = RandomStep(batch_size=batch_size, n_global=n_global, n_local=n_local, embed_dim=embed_dim,
                      head_dims=head_dims, grid=grid, local_grid=local_grid, patch_size=patch_size,
                      n_registers=n_registers, mask_ratio=mask_ratio, mask_probability=mask_probability,
                      teacher_noise=teacher_noise, seed=seed, modules=modules, device=device, dtype=dtype)
    return step.inputs(loss)


def make_step_context(*, step: int = 0, max_steps: int = 100, epoch_length: int = 100, batch_size: int = 4,
                      n_global: int = 2, n_local: int = 2, world_size: int = 1,
                      logging_step: bool = True) -> StepContext:
    """A step context with the given geometry; ``world_size`` scales ``global_batch_size`` for tests of
    distributed reductions."""
    return StepContext(step=step, max_steps=max_steps, n_global=n_global, n_local=n_local, batch_size=batch_size,
                       global_batch_size=batch_size * world_size, epoch_length=epoch_length,
                       logging_step=logging_step)
