"""The ``latent_mim`` loss: its value against a direct computation, gradients to the student only
(backbone and predictor), drop vs replace requests, the optional CLS term, and registration."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from conftest import EMBED, PassView, context, predictor, random_masks, step_inputs, tiny_vit
from sslkit_latent_mim.loss import LatentMIMLoss, LatentMIMParams
from sslkit_latent_mim.targets import latent_targets

from sslkit.components import BuildContext
from sslkit.errors import RecipeError
from sslkit.outputs import Output, StepInputs
from sslkit.registry import get_registry

Setup = tuple[LatentMIMLoss, StepInputs, torch.nn.Module, torch.nn.Module, torch.nn.Module, torch.Tensor, torch.Tensor]


def setup(params: LatentMIMParams, seed: int = 0) -> Setup:
    """The loss's inputs as the engine's plan asks for them, over a student, its predictor and a teacher
    (a trainable copy, so that a leak of gradient into it would show); also the images and masks."""
    student, head = tiny_vit(seed), predictor(seed + 1, depth=1)
    teacher = copy.deepcopy(student)
    with torch.no_grad():
        for p in teacher.parameters():
            p.add_(0.01 * torch.randn_like(p))
    images, masks = torch.randn(4, 3, 16, 16), random_masks(4, 0.6, seed)
    loss = LatentMIMLoss(params, BuildContext(embed_dim=EMBED, heads=("predictor",)))
    blocks = tuple(range(student.num_layers - params.top_k, student.num_layers))  # the targets' blocks=
    views = {"student": PassView("student", {"backbone": student, "predictor": head}, images, masks),
             "teacher": PassView("teacher", {"backbone": teacher}, images, masks, blocks=blocks)}
    return loss, step_inputs(loss, views), student, head, teacher, images, masks


@pytest.mark.parametrize(("distance", "masking"), [("mse", "drop"), ("smooth_l1", "drop"), ("mse", "replace")])
def test_value_is_the_mean_error_over_masked_tokens(distance: str, masking: str) -> None:
    params = LatentMIMParams(top_k=2, distance=distance, beta=0.5, student_masking=masking)  # type: ignore[arg-type]
    loss, inputs, student, head, teacher, images, masks = setup(params)
    value = loss(inputs, context())
    with torch.no_grad():
        blocks = teacher(images, blocks=(0, 1)).blocks
        targets = latent_targets([blocks[0], blocks[1]], "instance", "layer")[masks]
        patches = student(images, masks, masking=masking).patches
        predictions = head(patches, masks)
    if distance == "mse":
        expected = (predictions - targets).square().mean()
    else:
        expected = F.smooth_l1_loss(predictions, targets, beta=0.5)
    torch.testing.assert_close(value.detach(), expected, rtol=1e-4, atol=1e-5)


def test_gradients_reach_the_student_backbone_and_predictor_only() -> None:
    loss, inputs, student, head, teacher, _, _ = setup(LatentMIMParams(top_k=2))
    loss(inputs, context()).backward()
    assert all(p.grad is None for p in teacher.parameters()), "no gradient may reach the teacher"
    assert student.patch_embed.proj.weight.grad.abs().sum() > 0
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in head.parameters())
    assert student.mask_token.grad is None, "a 'drop' pass never uses the backbone's mask token"


def test_requests_follow_the_student_masking_and_the_predictor_is_student_only() -> None:
    for masking in ("drop", "replace"):
        loss = LatentMIMLoss(LatentMIMParams(top_k=3, student_masking=masking, predictor="pred"),  # type: ignore[arg-type]
                             BuildContext(heads=("pred",)))
        predictions, targets = loss.inputs["predictions"], loss.inputs["targets"]
        assert predictions.masking == masking and predictions.modules == ("pred",) and not predictions.heads
        assert predictions.model == "student" and predictions.positions == targets.positions == "masked"
        assert targets.model == "teacher" and targets.masking == "none" and targets.blocks == (-3, -2, -1)
        assert set(loss.inputs) == {"predictions", "targets", "masks"}, "no CLS term: no CLS or block request"
        assert loss.inputs["masks"] == Output("masks")


def test_cls_term_regresses_the_mean_target_with_its_weight() -> None:
    plain, inputs, *_ = setup(LatentMIMParams(top_k=2))
    value = plain(inputs, context()).item()
    with_cls, inputs, *_ = setup(LatentMIMParams(top_k=2, cls_weight=0.5))
    total = with_cls(inputs, context())
    summary = inputs["target_blocks"].mean(dim=1)  # the raw top-K block average, over positions
    cls_target = (summary - summary.mean(-1, keepdim=True)) / (summary.var(-1, unbiased=False, keepdim=True)
                                                               + 1e-6).sqrt()
    cls_term = (inputs["student_cls"] - cls_target).square().mean()
    torch.testing.assert_close(total.detach(), torch.tensor(value) + 0.5 * cls_term.detach(), rtol=1e-4, atol=1e-5)
    assert set(with_cls.diagnostics()) == {"masked_fraction", "target_std", "prediction_std", "cls"}


def test_components_are_registered_by_the_installed_distribution() -> None:
    registry = get_registry()
    for kind, name in (("loss", "latent_mim"), ("head", "latent_predictor"), ("output", "latent_targets"),
                       ("output", "latent_predictions")):
        assert registry.get(kind, name).provider.distribution == "sslkit-latent-mim"
    with pytest.raises(RecipeError, match=r"student_masking: expected one of 'drop', 'replace', got 'dorp'"):
        registry.create("loss", "latent_mim", student_masking="dorp")
