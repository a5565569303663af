"""DINO loss against a direct, loop-based implementation of Caron et al. 2021, eq. 3."""

from __future__ import annotations

import math

import pytest
import torch

from sslkit.components import BuildContext, Output, StepContext, StepInputs
from sslkit_plugins.losses.dino import DINOLoss, DINOLossParams

K, B = 6, 3
TEACHER_TEMP = 0.05


def make_loss(n_local: int, n_global: int = 2, **kwargs) -> DINOLoss:
    ctx = BuildContext(head_dims={"dino": K}, n_global_crops=n_global, n_local_crops=n_local)
    return DINOLoss(DINOLossParams(**{"teacher_temp": TEACHER_TEMP, **kwargs}), ctx)


def step(n_global: int, n_local: int, logging_step: bool = True) -> StepContext:
    return StepContext(
        logging_step=logging_step,
        step=0,
        max_steps=10,
        n_global=n_global,
        n_local=n_local,
        batch_size=B,
        global_batch_size=B,
    )


def outputs(student: torch.Tensor, teacher: torch.Tensor) -> StepInputs:
    return StepInputs({"student": student, "teacher": teacher})


def naive_dino(student: torch.Tensor, targets: torch.Tensor, n_global: int, n_student: int) -> tuple[float, int]:
    """Mean over images and over (teacher crop i, student crop j != i) of -sum_k p log q; also the pair count."""
    total, pairs = 0.0, 0
    for i in range(n_global):
        for j in range(n_student):
            if i == j:
                continue
            pairs += 1
            for b in range(B):
                s = [float(student[j * B + b, k]) / 0.1 for k in range(K)]
                log_z = math.log(sum(math.exp(v) for v in s))
                total += -sum(float(targets[i * B + b, k]) * (s[k] - log_z) for k in range(K)) / B
    return total / pairs, pairs


@pytest.mark.parametrize(("n_global", "n_local", "expected_pairs"), [(2, 0, 2), (2, 2, 6), (2, 8, 18), (3, 1, 9)])
def test_centering_matches_the_formula(
    naive_centered_softmax, n_global: int, n_local: int, expected_pairs: int
) -> None:
    torch.manual_seed(n_local)
    loss = make_loss(n_local, n_global)
    student = torch.randn((n_global + n_local) * B, K)
    teacher = torch.randn(n_global * B, K)
    value = loss(outputs(student, teacher), step(n_global, n_local))
    targets = naive_centered_softmax(teacher, torch.zeros(1, K), TEACHER_TEMP)
    expected, pairs = naive_dino(student, targets, n_global, n_global + n_local)
    assert pairs == expected_pairs
    assert value.shape == () and math.isclose(value.item(), expected, rel_tol=1e-5)


def test_center_update_is_committed_and_second_step_uses_it(naive_centered_softmax) -> None:
    torch.manual_seed(0)
    loss = make_loss(2, center_momentum=0.9)
    teacher1, teacher2 = torch.randn(2 * B, K), torch.randn(2 * B, K)
    student = torch.randn(4 * B, K)
    loss(outputs(student, teacher1), step(2, 2))
    assert loss.center.abs().sum() == 0, "forward must leave the center pending until commit()"
    loss.commit()
    expected_center = [0.1 * sum(float(teacher1[r, k]) for r in range(2 * B)) / (2 * B) for k in range(K)]
    torch.testing.assert_close(loss.center, torch.tensor([expected_center]))
    value = loss(outputs(student, teacher2), step(2, 2))
    targets = naive_centered_softmax(teacher2, torch.tensor([expected_center]), TEACHER_TEMP)
    assert math.isclose(value.item(), naive_dino(student, targets, 2, 4)[0], rel_tol=1e-5)
    assert "center" in loss.state_dict()
    diag = loss.diagnostics()
    torch.testing.assert_close(diag["center_norm"], loss.center.norm())
    entropy = -(targets * targets.log()).sum(dim=1).mean()
    torch.testing.assert_close(diag["teacher_entropy"].double(), entropy, rtol=1e-5, atol=1e-6)


def test_teacher_entropy_is_computed_on_logging_steps_only() -> None:
    torch.manual_seed(0)
    loss = make_loss(2)
    teacher, student = torch.randn(2 * B, K), torch.randn(4 * B, K)
    loss(outputs(student, teacher), step(2, 2, logging_step=False))
    assert "teacher_entropy" not in loss.diagnostics()
    loss(outputs(student, teacher), step(2, 2, logging_step=True))
    assert float(loss.diagnostics()["teacher_entropy"]) > 0.0


def test_sinkhorn_knopp_matches_the_formula(naive_sinkhorn_knopp) -> None:
    torch.manual_seed(1)
    loss = make_loss(2, normalization="sinkhorn_knopp", sinkhorn_iterations=3)
    student, teacher = torch.randn(4 * B, K), torch.randn(2 * B, K)
    value = loss(outputs(student, teacher), step(2, 2))
    targets = naive_sinkhorn_knopp(teacher, TEACHER_TEMP, 3)  # over all teacher rows (both crops) together
    assert math.isclose(value.item(), naive_dino(student, targets, 2, 4)[0], rel_tol=1e-5)
    assert loss.center is None and "center" not in loss.state_dict()
    assert "center_norm" not in loss.diagnostics()


def test_without_local_crops_ignores_local_rows(naive_centered_softmax) -> None:
    torch.manual_seed(2)
    loss = make_loss(3, use_local_crops=False)
    assert loss.inputs["student"] == Output("cls", model="student", crops="global", heads=("dino",))
    student, teacher = torch.randn(5 * B, K), torch.randn(2 * B, K)  # the engine hands the global rows only
    value = loss(outputs(student[: 2 * B], teacher), step(2, 3))
    targets = naive_centered_softmax(teacher, torch.zeros(1, K), TEACHER_TEMP)
    assert math.isclose(value.item(), naive_dino(student, targets, 2, 2)[0], rel_tol=1e-5)


def test_gradients_reach_the_student_only() -> None:
    torch.manual_seed(3)
    loss = make_loss(2)
    student = torch.randn(4 * B, K, requires_grad=True)
    teacher = torch.randn(2 * B, K, requires_grad=True)
    loss(outputs(student, teacher), step(2, 2)).backward()
    assert teacher.grad is None and not loss.center.requires_grad
    # autograd of the direct formula gives the same student gradient
    reference = student.detach().clone().requires_grad_(True)
    p = torch.softmax(teacher.detach() / TEACHER_TEMP, dim=-1).view(2, B, K)
    q = torch.log_softmax(reference / 0.1, dim=-1).view(4, B, K)
    terms = [-(p[i] * q[j]).sum(dim=-1).mean() for i in range(2) for j in range(4) if i != j]
    torch.stack(terms).mean().backward()
    torch.testing.assert_close(student.grad, reference.grad)


def test_inputs_are_the_cls_tokens_through_the_head() -> None:
    loss = make_loss(2, head="h", normalization="sinkhorn_knopp")
    assert loss.inputs == {"student": Output("cls", model="student", crops="all", heads=("h",)),
                           "teacher": Output("cls", model="teacher", crops="global", heads=("h",))}


def test_teacher_temp_is_read_at_every_forward(naive_centered_softmax) -> None:
    """The engine writes a scheduled teacher_temp into the params before each step."""
    torch.manual_seed(4)
    loss = make_loss(2, center_momentum=1.0)  # the center stays 0
    student, teacher = torch.randn(4 * B, K), torch.randn(2 * B, K)
    loss(outputs(student, teacher), step(2, 2))
    loss.params.teacher_temp = 0.2
    value = loss(outputs(student, teacher), step(2, 2))
    targets = naive_centered_softmax(teacher, torch.zeros(1, K), 0.2)
    assert math.isclose(value.item(), naive_dino(student, targets, 2, 4)[0], rel_tol=1e-5)


def test_diagnostics_report_the_health_of_the_targets() -> None:
    torch.manual_seed(5)
    loss = make_loss(2)
    loss(outputs(torch.randn(4 * B, K), torch.randn(2 * B, K)), step(2, 2))
    diag = loss.diagnostics()
    assert set(diag) == {"teacher_entropy", "entropy_gap", "target_usage", "target_coverage", "center_norm"}
    torch.testing.assert_close(diag["entropy_gap"], math.log(K) - diag["teacher_entropy"])


def test_shape_and_build_errors() -> None:
    loss = make_loss(2)
    with pytest.raises(ValueError, match="student rows"):
        loss(outputs(torch.randn(2 * B, K), torch.randn(2 * B, K)), step(2, 2))
    with pytest.raises(ValueError, match="two crops"):
        make_loss(0, n_global=1)
    with pytest.raises(ValueError, match="head 'dino'"):
        DINOLoss(DINOLossParams(), BuildContext())
