"""iBOT loss against a direct, loop-based implementation of Zhou et al. 2022, eq. 2 (DINOv2's per-crop weights)."""

from __future__ import annotations

import math

import pytest
import torch

from sslkit.components import BuildContext, Output, StepContext, StepInputs
from sslkit_plugins.losses.ibot import IBOTLoss, IBOTLossParams

K, N, B = 5, 6, 2
TEACHER_TEMP = 0.07
CROP_COUNTS = [3, 0, 1, 6]  # masked tokens of each of the n_global * B = 4 crops (one crop unmasked)


def make_masks(counts: list[int]) -> torch.Tensor:
    g = torch.Generator().manual_seed(5)
    masks = torch.zeros(len(counts), N, dtype=torch.bool)
    for c, m in enumerate(counts):
        masks[c, torch.randperm(N, generator=g)[:m]] = True
    return masks


def make_loss(**kwargs) -> IBOTLoss:
    return IBOTLoss(IBOTLossParams(**{"teacher_temp": TEACHER_TEMP, **kwargs}), BuildContext(head_dims={"ibot": K}))


def step() -> StepContext:
    return StepContext(
        step=0, max_steps=10, n_global=2, n_local=0, batch_size=B, global_batch_size=B
    )


def outputs(student: torch.Tensor, teacher: torch.Tensor, masks: torch.Tensor) -> StepInputs:
    return StepInputs({"student": student, "teacher": teacher, "masks": masks})


def naive_ibot(student: torch.Tensor, targets: torch.Tensor, masks: torch.Tensor) -> float:
    """sum over crops c and masked tokens i of CE / m_c, divided by the number of crops."""
    total, row = 0.0, 0
    for c in range(masks.shape[0]):
        m_c = int(masks[c].sum())
        for n in range(N):
            if not masks[c, n]:
                continue
            s = [float(student[row, k]) / 0.1 for k in range(K)]
            log_z = math.log(sum(math.exp(v) for v in s))
            total += -sum(float(targets[row, k]) * (s[k] - log_z) for k in range(K)) / m_c
            row += 1
    assert row == student.shape[0]
    return total / masks.shape[0]


def test_per_crop_weighting_with_unequal_mask_counts(naive_centered_softmax) -> None:
    torch.manual_seed(0)
    masks = make_masks(CROP_COUNTS)
    m = sum(CROP_COUNTS)
    student, teacher = torch.randn(m, K), torch.randn(m, K)
    loss = make_loss()
    value = loss(outputs(student, teacher, masks), step())
    targets = naive_centered_softmax(teacher, torch.zeros(1, K), TEACHER_TEMP)
    assert math.isclose(value.item(), naive_ibot(student, targets, masks), rel_tol=1e-5)
    # once the step is committed, the center moves towards the mean of the masked teacher logits
    loss.commit()
    expected = [0.1 * sum(float(teacher[r, k]) for r in range(m)) / m for k in range(K)]
    torch.testing.assert_close(loss.center, torch.tensor([expected]))


def test_a_crop_with_fewer_masked_tokens_weighs_each_token_more() -> None:
    # identical tokens everywhere: the gradient of each token is proportional to its weight 1 / m_c, so
    # the lone masked token of crop 0 gets 6 times the gradient of each token of the fully masked crop 3
    masks = make_masks([1, 0, 0, 6])
    student = torch.zeros(7, K, requires_grad=True)
    teacher = torch.randn(1, K, generator=torch.Generator().manual_seed(0)).expand(7, K)
    make_loss()(outputs(student, teacher, masks), step()).backward()
    grad_norms = student.grad.norm(dim=1)
    assert grad_norms[0] > 0
    torch.testing.assert_close(grad_norms[1:], torch.full((6,), grad_norms[0].item() / 6))


def test_sinkhorn_knopp_over_all_masked_tokens(naive_sinkhorn_knopp) -> None:
    torch.manual_seed(1)
    masks = make_masks(CROP_COUNTS)
    m = sum(CROP_COUNTS)
    student, teacher = torch.randn(m, K), torch.randn(m, K)
    loss = make_loss(normalization="sinkhorn_knopp", sinkhorn_iterations=3)
    value = loss(outputs(student, teacher, masks), step())
    targets = naive_sinkhorn_knopp(teacher, TEACHER_TEMP, 3)
    assert math.isclose(value.item(), naive_ibot(student, targets, masks), rel_tol=1e-5)
    assert loss.center is None


@pytest.mark.parametrize("normalization", ["centering", "sinkhorn_knopp"])
def test_no_masked_token_gives_a_connected_zero(normalization: str) -> None:
    loss = make_loss(normalization=normalization)
    student = torch.zeros(0, K, requires_grad=True)
    value = loss(outputs(student, torch.zeros(0, K), make_masks([0, 0, 0, 0])), step())
    assert value.item() == 0.0 and value.requires_grad
    value.backward()
    assert student.grad is not None and student.grad.shape == (0, K)
    loss.commit()
    if loss.center is not None:
        assert loss.center.abs().sum() == 0  # no rows: the center is not pulled towards 0


def test_gradients_reach_the_student_only() -> None:
    torch.manual_seed(2)
    masks = make_masks(CROP_COUNTS)
    m = sum(CROP_COUNTS)
    student = torch.randn(m, K, requires_grad=True)
    teacher = torch.randn(m, K, requires_grad=True)
    make_loss()(outputs(student, teacher, masks), step()).backward()
    assert teacher.grad is None
    reference = student.detach().clone().requires_grad_(True)
    p = torch.softmax(teacher.detach() / TEACHER_TEMP, dim=-1)
    ce = -(p * torch.log_softmax(reference / 0.1, dim=-1)).sum(dim=-1)
    weights = torch.tensor([1 / c for c in CROP_COUNTS for _ in range(c)])
    ((ce * weights).sum() / 4).backward()
    torch.testing.assert_close(student.grad, reference.grad)


def test_inputs_and_errors() -> None:
    loss = make_loss()
    assert loss.inputs == {"student": Output("patches", model="student", positions="masked", heads=("ibot",)),
                           "teacher": Output("patches", model="teacher", positions="masked", heads=("ibot",)),
                           "masks": Output("masks")}
    shared = IBOTLoss(IBOTLossParams(head="dino"), BuildContext(head_dims={"dino": K}))
    assert shared.inputs["student"].heads == ("dino",) and shared.center.shape == (1, K)
    with pytest.raises(ValueError, match="differ in shape"):
        loss(outputs(torch.zeros(1, K), torch.zeros(2, K), make_masks([1, 0, 0, 0])), step())


def test_teacher_temp_is_read_at_every_forward(naive_centered_softmax) -> None:
    torch.manual_seed(3)
    masks = make_masks(CROP_COUNTS)
    m = sum(CROP_COUNTS)
    student, teacher = torch.randn(m, K), torch.randn(m, K)
    loss = make_loss()
    loss.params.teacher_temp = 0.3  # as the engine writes a scheduled value before the step
    value = loss(outputs(student, teacher, masks), step())
    targets = naive_centered_softmax(teacher, torch.zeros(1, K), 0.3)
    assert math.isclose(value.item(), naive_ibot(student, targets, masks), rel_tol=1e-5)
    assert set(loss.diagnostics()) == {"teacher_entropy", "entropy_gap", "target_usage", "target_coverage",
                                       "center_norm"}
