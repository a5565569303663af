"""Random step outputs for loss tests: the engine's layout, masks, gradients and determinism."""

from __future__ import annotations

import pytest
import torch

from sslkit.testing import make_step_context, make_step_outputs


def test_shapes_follow_the_engine_layout() -> None:
    out = make_step_outputs(batch_size=3, n_global=2, n_local=4, embed_dim=8, heads={"dino": 5, "ibot": 7},
                            grid=4, local_grid=2, patch_size=2, n_registers=2)
    assert out.student_global.cls.shape == (6, 8) and out.student_global.patches.shape == (6, 16, 8)
    assert out.student_global.registers.shape == (6, 2, 8)
    assert out.teacher_global.patches.shape == (6, 16, 8)
    assert out.student_local.cls.shape == (12, 8) and out.student_local.patches.shape == (12, 4, 8)
    assert out.student_cls_logits["dino"].shape == (18, 5) and out.teacher_cls_logits["ibot"].shape == (6, 7)
    n_masked = int(out.masks.sum())
    assert out.student_masked_logits["ibot"].shape == (n_masked, 7) == out.teacher_masked_logits["ibot"].shape
    assert out.crops.global_crops.shape == (6, 3, 8, 8) and out.crops.local_crops.shape == (12, 3, 4, 4)
    ctx = make_step_context(out, step=7)
    assert (ctx.batch_size, ctx.n_global, ctx.n_local, ctx.global_batch_size, ctx.step) == (3, 2, 4, 3, 7)


def test_student_tensors_are_leaves_with_gradients_and_teacher_tensors_are_close_constants() -> None:
    out = make_step_outputs(teacher_noise=0.1)
    students = [out.student_global.cls, out.student_global.patches, out.student_local.cls,
                out.student_cls_logits["dino"], out.student_masked_logits["dino"]]
    assert all(t.requires_grad and t.is_leaf for t in students)
    teachers = [out.teacher_global.cls, out.teacher_global.patches, out.teacher_cls_logits["dino"],
                out.teacher_masked_logits["dino"]]
    assert not any(t.requires_grad for t in teachers)
    difference = out.teacher_global.cls - out.student_global.cls.detach()
    assert 0.05 < difference.std().item() < 0.15
    gap = out.teacher_cls_logits["dino"] - out.student_cls_logits["dino"][: out.teacher_cls_logits["dino"].shape[0]]
    assert gap.abs().max().item() < 1.0


@pytest.mark.parametrize(("ratio", "probability"), [(0.25, 0.5), (0.5, 1.0), (0.0, 0.5)])
def test_masks_select_crops_and_mask_an_exact_count(ratio: float, probability: float) -> None:
    out = make_step_outputs(batch_size=8, grid=4, mask_ratio=ratio, mask_probability=probability, seed=3)
    counts = out.masks.sum(dim=1)
    expected = round(ratio * 16) if ratio > 0 else 0
    assert torch.equal(counts[out.masked_crops], torch.full_like(counts[out.masked_crops], expected))
    assert not out.masks[~out.masked_crops].any()
    if ratio > 0:
        assert out.masked_crops.any()
    if probability == 1.0:
        assert out.masked_crops.all()


def test_selection_frequency_follows_the_probability() -> None:
    selected = torch.cat([make_step_outputs(batch_size=16, mask_probability=0.3, seed=s).masked_crops
                          for s in range(40)])
    assert abs(selected.float().mean().item() - 0.3) < 0.05


def test_same_seed_same_outputs_and_no_local_crops_when_asked() -> None:
    a, b = make_step_outputs(seed=5), make_step_outputs(seed=5)
    assert torch.equal(a.student_global.patches, b.student_global.patches) and torch.equal(a.masks, b.masks)
    assert not torch.equal(a.student_global.cls, make_step_outputs(seed=6).student_global.cls)
    none = make_step_outputs(n_local=0)
    assert none.student_local is None and none.crops.local_crops is None
    assert none.student_cls_logits["dino"].shape[0] == none.teacher_cls_logits["dino"].shape[0]
