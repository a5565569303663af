"""Random but well-formed :class:`~sslkit.components.StepOutputs` and
:class:`~sslkit.components.StepContext` for unit tests of loss plugins.

The tensors follow the engine's layout (:mod:`sslkit.components`): crop-major rows, global
crops before local crops in the student's CLS logits, masked patch tokens in
``masks.nonzero()`` order. Student tensors are leaves with ``requires_grad=True`` (a test can
read their ``.grad`` after ``backward``); teacher tensors are the student's values plus noise,
without gradients, as the EMA teacher's outputs are close to the student's.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import Tensor, nn

from sslkit.components import BackboneOutput, Crops, StepContext, StepOutputs


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


def _student(shape: tuple[int, ...], generator: torch.Generator, device: torch.device | str,
             dtype: torch.dtype) -> Tensor:
    return torch.randn(shape, generator=generator).to(device=device, dtype=dtype).requires_grad_(True)


def _teacher(student: Tensor, noise: float, generator: torch.Generator) -> Tensor:
    jitter = torch.randn(student.shape, generator=generator).to(device=student.device, dtype=student.dtype)
    return (student.detach() + noise * jitter).clone()


def _backbone_outputs(n_rows: int, n_patches: int, embed_dim: int, n_registers: int, generator: torch.Generator,
                      device: torch.device | str, dtype: torch.dtype) -> BackboneOutput:
    return BackboneOutput(
        cls=_student((n_rows, embed_dim), generator, device, dtype),
        patches=_student((n_rows, n_patches, embed_dim), generator, device, dtype),
        registers=_student((n_rows, n_registers, embed_dim), generator, device, dtype) if n_registers else None,
    )


def make_step_outputs(
    batch_size: int = 4,
    n_global: int = 2,
    n_local: int = 2,
    embed_dim: int = 32,
    heads: Mapping[str, int] | None = None,
    mask_ratio: float = 0.5,
    mask_probability: float = 0.5,
    grid: int = 4,
    local_grid: int = 2,
    patch_size: int = 4,
    n_registers: int = 0,
    teacher_noise: float = 0.5,
    seed: int = 0,
    device: torch.device | str = "cpu",
    dtype: torch.dtype = torch.float32,
) -> StepOutputs:
    """Random outputs of one step, shaped as the engine produces them.

    ``batch_size`` images, each with ``n_global`` global crops of ``grid * patch_size`` pixels
    (``grid * grid`` patch tokens) and ``n_local`` local crops of ``local_grid * patch_size``
    pixels. ``heads`` maps head names to output sizes K (default ``{"dino": 64}``); every head
    gets CLS logits (student: global then local crops; teacher: global crops) and masked-patch
    logits. Each global crop is selected for masking with ``mask_probability`` (at least one
    crop when positive) and then has ``round(mask_ratio * grid**2)`` masked patches. Teacher
    tensors are ``student + teacher_noise * N(0, 1)``. ``out.crops`` holds random images of the
    right sizes, so that a loss running a model of its own (e.g. on ``out.crops.global_crops``)
    gets consistent patch counts.
    """
    heads = dict(heads) if heads is not None else {"dino": 64}
    generator = torch.Generator().manual_seed(seed)
    n_patches = grid * grid
    n_crops = n_global * batch_size
    n_local_crops = n_local * batch_size
    student_global = _backbone_outputs(n_crops, n_patches, embed_dim, n_registers, generator, device, dtype)
    teacher_global = BackboneOutput(
        cls=_teacher(student_global.cls, teacher_noise, generator),
        patches=_teacher(student_global.patches, teacher_noise, generator),  # type: ignore[arg-type]
        registers=_teacher(student_global.registers, teacher_noise, generator) if n_registers else None,
    )
    student_local = None
    if n_local:
        student_local = _backbone_outputs(n_local_crops, local_grid * local_grid, embed_dim, n_registers, generator,
                                          device, dtype)
    masked_crops, masks = _draw_masks(n_crops, n_patches, mask_ratio, mask_probability, generator)
    n_masked = int(masks.sum())
    student_cls = {h: _student((n_crops + n_local_crops, k), generator, device, dtype) for h, k in heads.items()}
    teacher_cls = {h: _teacher(logits[:n_crops], teacher_noise, generator) for h, logits in student_cls.items()}
    student_masked = {h: _student((n_masked, k), generator, device, dtype) for h, k in heads.items()}
    teacher_masked = {h: _teacher(logits, teacher_noise, generator) for h, logits in student_masked.items()}
    side = grid * patch_size
    local_side = local_grid * patch_size
    crops = Crops(
        global_crops=torch.randn(n_crops, 3, side, side, generator=generator).to(device=device, dtype=dtype),
        local_crops=(torch.randn(n_local_crops, 3, local_side, local_side, generator=generator)
                     .to(device=device, dtype=dtype) if n_local else None),
        n_global=n_global,
        n_local=n_local,
        batch_size=batch_size,
    )
    return StepOutputs(
        student_global=student_global,
        teacher_global=teacher_global,
        student_local=student_local,
        masks=masks.to(device),
        masked_crops=masked_crops.to(device),
        student_cls_logits=student_cls,
        teacher_cls_logits=teacher_cls,
        student_masked_logits=student_masked,
        teacher_masked_logits=teacher_masked,
        crops=crops,
    )


def make_step_context(
    out: StepOutputs | None = None,
    *,
    step: int = 0,
    max_steps: int = 100,
    teacher_temp: float = 0.04,
    epoch_length: int = 100,
    teacher_backbone: nn.Module | None = None,
    batch_size: int = 4,
    n_global: int = 2,
    n_local: int = 2,
    world_size: int = 1,
) -> StepContext:
    """The step context of ``out`` (geometry read from ``out.crops``; otherwise from the keyword
    arguments). ``world_size`` scales ``global_batch_size`` for tests of distributed reductions."""
    if out is not None and out.crops is not None:
        batch_size, n_global, n_local = out.crops.batch_size, out.crops.n_global, out.crops.n_local
    return StepContext(
        step=step,
        max_steps=max_steps,
        teacher_temp=teacher_temp,
        n_global=n_global,
        n_local=n_local,
        batch_size=batch_size,
        global_batch_size=batch_size * world_size,
        epoch_length=epoch_length,
        teacher_backbone=teacher_backbone,
    )
