"""Random step inputs for loss tests: the engine's layout, consistency between requests, masks,
gradients and determinism."""

from __future__ import annotations

import pytest
import torch

from sslkit.components import Loss
from sslkit.outputs import Output
from sslkit.testing import RandomStep, TinyPatchBackbone, make_step_context, make_step_inputs


class Declares(Loss):
    """A loss that only declares inputs (the helpers read nothing else)."""

    def __init__(self, **inputs: Output) -> None:
        super().__init__()
        self.inputs = dict(inputs)


def test_shapes_follow_the_engine_layout() -> None:
    loss = Declares(
        cls=Output("cls"), all_cls=Output("cls", crops="all"), local_patches=Output("patches", crops="local"),
        registers=Output("registers", model="teacher"), logits=Output("cls", crops="all", heads=("dino",)),
        teacher_logits=Output("cls", model="teacher", heads=("dino",)),
        masked=Output("patches", positions="masked", heads=("ibot",)), visible=Output("patches", positions="visible"),
        blocks=Output("blocks", blocks=(-1,)), images=Output("images"), local_images=Output("images", crops="local"),
        masks=Output("masks"), masked_crops=Output("masked_crops"))
    inputs = make_step_inputs(loss, batch_size=3, n_global=2, n_local=4, embed_dim=8, head_dims={"dino": 5, "ibot": 7},
                              grid=4, local_grid=2, patch_size=2, n_registers=2)
    assert inputs["cls"].shape == (6, 8) and inputs["all_cls"].shape == (18, 8)
    assert inputs["local_patches"].shape == (12, 4, 8) and inputs["registers"].shape == (6, 2, 8)
    assert inputs["logits"].shape == (18, 5) and inputs["teacher_logits"].shape == (6, 5)
    n_masked = int(inputs["masks"].sum())
    assert inputs["masked"].shape == (n_masked, 7) and inputs["visible"].shape == (6 * 16 - n_masked, 8)
    assert inputs["blocks"].shape == (6, 16, 8) and inputs["masks"].shape == (6, 16)
    assert inputs["masked_crops"].shape == (6,) and inputs["masked_crops"].dtype == torch.bool
    assert inputs["images"].shape == (6, 3, 8, 8) and inputs["local_images"].shape == (12, 3, 4, 4)
    ctx = make_step_context(step=7, batch_size=3, n_global=2, n_local=4)
    assert (ctx.batch_size, ctx.n_global, ctx.n_local, ctx.global_batch_size, ctx.step) == (3, 2, 4, 3, 7)
    assert RandomStep(batch_size=3, n_local=4).context(world_size=2).global_batch_size == 6


def test_requests_agree_with_each_other_as_the_engine_s_would() -> None:
    step = RandomStep(teacher_noise=0.1, head_dims={"dino": 6}, seed=2)
    student = step.value(Output("cls", crops="all", heads=("dino",)))
    assert torch.equal(student[:8], step.value(Output("cls", heads=("dino",))))  # global rows first
    assert torch.equal(student[8:], step.value(Output("cls", crops="local", heads=("dino",))))
    patches = step.value(Output("patches"))
    masks = step.value(Output("masks"))
    assert torch.equal(step.value(Output("patches", positions="masked")), patches[masks])  # masks.nonzero() order
    teacher = step.value(Output("patches", model="teacher", positions="masked"))
    assert torch.equal(teacher, step.value(Output("patches", model="teacher"))[masks])
    difference = teacher - patches[masks]
    assert 0.05 < difference.std().item() < 0.15  # the same tokens, plus noise
    assert not torch.equal(patches, step.value(Output("cls", crops="all")))  # other kinds: other draws


def test_student_tensors_are_leaves_with_gradients_and_teacher_tensors_constants() -> None:
    loss = Declares(student=Output("cls"), teacher=Output("cls", model="teacher"), masks=Output("masks"),
                    images=Output("images"))
    inputs = make_step_inputs(loss)
    assert inputs["student"].requires_grad and inputs["student"].is_leaf
    assert not inputs["teacher"].requires_grad and not inputs["images"].requires_grad
    again = make_step_inputs(loss)
    assert inputs["student"] is not again["student"] and torch.equal(inputs["student"], again["student"])


@pytest.mark.parametrize(("ratio", "probability"), [(0.25, 0.5), (0.5, 1.0), (0.0, 0.5)])
def test_masks_select_crops_and_mask_an_exact_count(ratio: float, probability: float) -> None:
    step = RandomStep(batch_size=8, grid=4, mask_ratio=ratio, mask_probability=probability, seed=3)
    counts = step.masks.sum(dim=1)
    expected = round(ratio * 16) if ratio > 0 else 0
    assert torch.equal(counts[step.masked_crops], torch.full_like(counts[step.masked_crops], expected))
    assert not step.masks[~step.masked_crops].any()
    if ratio > 0:
        assert step.masked_crops.any()
    if probability == 1.0:
        assert step.masked_crops.all()


def test_selection_frequency_follows_the_probability() -> None:
    selected = torch.cat([RandomStep(batch_size=16, mask_probability=0.3, seed=s).masked_crops for s in range(40)])
    assert abs(selected.float().mean().item() - 0.3) < 0.05


def test_same_seed_same_inputs_and_clear_setup_errors() -> None:
    loss = Declares(patches=Output("patches"), masks=Output("masks"))
    a, b = make_step_inputs(loss, seed=5), make_step_inputs(loss, seed=5)
    assert torch.equal(a["patches"], b["patches"]) and torch.equal(a["masks"], b["masks"])
    assert not torch.equal(a["patches"], make_step_inputs(loss, seed=6)["patches"])
    with pytest.raises(AssertionError, match=r"output size of 'dino' is unknown; pass head_dims=\{'dino': K\}"):
        make_step_inputs(Declares(x=Output("cls", heads=("dino",))))
    with pytest.raises(AssertionError, match="n_local >= 1"):
        make_step_inputs(Declares(x=Output("cls", crops="all")), n_local=0)
    with pytest.raises(AssertionError, match=r"modules=\{'teacher': <backbone>\}"):
        make_step_inputs(Declares(x=Output("backbone", model="teacher")))
    backbone = TinyPatchBackbone()
    assert make_step_inputs(Declares(x=Output("backbone", model="teacher")), modules={"teacher": backbone}
                            ).module("x") is backbone
