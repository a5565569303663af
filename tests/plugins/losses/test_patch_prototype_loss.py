"""Patch-prototype loss against a direct, loop-based implementation of its formula (module docstring)."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from sslkit.components import BuildContext, Output, StepContext, StepInputs
from sslkit_plugins.losses.patch_prototype import PatchPrototypeLoss, PatchPrototypeLossParams
from sslkit_plugins.losses.sinkhorn_knopp import sinkhorn_knopp

D, N, P, CROPS = 4, 5, 3, 4
TEACHER_TEMP = 0.1
CROP_COUNTS = [2, 0, 5, 1]


def make_loss(**kwargs) -> PatchPrototypeLoss:
    torch.manual_seed(0)
    params = PatchPrototypeLossParams(num_prototypes=P, **{"teacher_temp": TEACHER_TEMP, **kwargs})
    return PatchPrototypeLoss(params, BuildContext(embed_dim=D))


def step(logging_step: bool = True) -> StepContext:
    return StepContext(step=0, max_steps=10, n_global=2, n_local=0, batch_size=2, global_batch_size=2,
                       logging_step=logging_step)


def make_masks() -> torch.Tensor:
    masks = torch.zeros(CROPS, N, dtype=torch.bool)
    for c, m in enumerate(CROP_COUNTS):
        masks[c, torch.randperm(N, generator=torch.Generator().manual_seed(c))[:m]] = True
    return masks


def outputs(loss: PatchPrototypeLoss, student: torch.Tensor, teacher: torch.Tensor, masks: torch.Tensor,
            ) -> StepInputs:
    """What the engine hands the loss: the masked positions (and the masks) in masked mode, all tokens otherwise."""
    if loss.params.mode == "all":
        return StepInputs({"student": student, "teacher": teacher})
    return StepInputs({"student": student[masks], "teacher": teacher[masks], "masks": masks})


def _unit(v: list[float]) -> list[float]:
    norm = math.sqrt(sum(x * x for x in v))
    return [x / norm for x in v]


def naive(
    loss: PatchPrototypeLoss,
    student: torch.Tensor,
    teacher: torch.Tensor,
    selected: torch.Tensor,
    normalization: str,
    naive_sinkhorn_knopp,
    teacher_temp: float = TEACHER_TEMP,
) -> float:
    protos = [_unit([float(x) for x in row]) for row in loss.prototypes.detach()]
    positions = [(c, n) for c in range(CROPS) for n in range(N) if selected[c, n]]
    t_scores = torch.tensor(
        [
            [sum(a * b for a, b in zip(_unit([float(x) for x in teacher[c, n]]), w, strict=True)) for w in protos]
            for c, n in positions
        ]
    )
    targets = naive_sinkhorn_knopp(t_scores, teacher_temp, 3)
    total = 0.0
    for row, (c, n) in enumerate(positions):
        x = _unit([float(v) for v in student[c, n]])
        s = [sum(a * b for a, b in zip(x, w, strict=True)) / 0.1 for w in protos]
        log_z = math.log(sum(math.exp(v) for v in s))
        ce = -sum(float(targets[row, p]) * (s[p] - log_z) for p in range(P))
        total += ce / (int(selected[c].sum()) if normalization == "per_sample" else 1)
    return total / (CROPS if normalization == "per_sample" else len(positions))


@pytest.mark.parametrize("mode", ["masked", "all"])
@pytest.mark.parametrize("normalization", ["per_token", "per_sample"])
def test_matches_the_formula(naive_sinkhorn_knopp, mode: str, normalization: str) -> None:
    loss = make_loss(mode=mode, normalization=normalization)
    student, teacher = torch.randn(CROPS, N, D), torch.randn(CROPS, N, D)
    masks = make_masks()
    value = loss(outputs(loss, student, teacher, masks), step())
    selected = masks if mode == "masked" else torch.ones(CROPS, N, dtype=torch.bool)
    expected = naive(loss, student, teacher, selected, normalization, naive_sinkhorn_knopp)
    assert math.isclose(value.item(), expected, rel_tol=1e-5)
    positions = "masked" if mode == "masked" else "all"
    assert loss.inputs["student"] == Output("patches", model="student", positions=positions)
    assert loss.inputs["teacher"] == Output("patches", model="teacher", positions=positions)
    assert ("masks" in loss.inputs) == (mode == "masked")


def test_per_sample_differs_from_per_token_with_unequal_counts() -> None:
    student, teacher = torch.randn(CROPS, N, D), torch.randn(CROPS, N, D)
    values = []
    for normalization in ("per_token", "per_sample"):
        loss = make_loss(normalization=normalization)
        values.append(loss(outputs(loss, student, teacher, make_masks()), step()).item())
    assert not math.isclose(values[0], values[1], rel_tol=1e-3)


def test_teacher_temperature_is_read_at_every_forward(naive_sinkhorn_knopp) -> None:
    loss = make_loss()
    loss.params.teacher_temp = 0.3  # as the engine writes a scheduled value before the step
    student, teacher = torch.randn(CROPS, N, D), torch.randn(CROPS, N, D)
    masks = make_masks()
    value = loss(outputs(loss, student, teacher, masks), step())
    expected = naive(loss, student, teacher, masks, "per_token", naive_sinkhorn_knopp, teacher_temp=0.3)
    assert math.isclose(value.item(), expected, rel_tol=1e-5)


def test_gradients_reach_prototypes_and_student_not_teacher() -> None:
    loss = make_loss()
    student = torch.randn(CROPS, N, D, requires_grad=True)
    teacher = torch.randn(CROPS, N, D, requires_grad=True)
    masks = make_masks()
    loss(outputs(loss, student, teacher, masks), step()).backward()
    assert teacher.grad is None
    assert loss.prototypes.grad is not None and loss.prototypes.grad.abs().sum() > 0
    assert student.grad[masks].abs().sum(dim=-1).min() > 0 and student.grad[~masks].abs().sum() == 0
    # the same gradients from the direct formula with a frozen teacher assignment
    protos = loss.prototypes.detach().clone().requires_grad_(True)
    ref_student = student.detach().clone().requires_grad_(True)
    w = F.normalize(protos, dim=-1)
    with torch.no_grad():
        q = sinkhorn_knopp(F.normalize(teacher[masks], dim=-1) @ w.T, TEACHER_TEMP, 3)
    logp = torch.log_softmax(F.normalize(ref_student[masks], dim=-1) @ w.T / 0.1, dim=-1)
    (-(q * logp).sum(dim=-1).mean()).backward()
    torch.testing.assert_close(student.grad, ref_student.grad)
    torch.testing.assert_close(loss.prototypes.grad, protos.grad)


def test_diagnostics_report_the_health_of_the_assignments_on_logging_steps() -> None:
    loss = make_loss()
    student, teacher = torch.randn(CROPS, N, D), torch.randn(CROPS, N, D)
    loss(outputs(loss, student, teacher, make_masks()), step(logging_step=False))
    assert loss.diagnostics() == {}
    loss(outputs(loss, student, teacher, make_masks()), step())
    diag = loss.diagnostics()
    assert set(diag) == {"teacher_entropy", "entropy_gap", "target_usage", "target_coverage"}
    torch.testing.assert_close(diag["entropy_gap"], math.log(P) - diag["teacher_entropy"])


def test_no_masked_token_and_errors() -> None:
    loss = make_loss()
    student = torch.randn(CROPS, N, D, requires_grad=True)
    empty = torch.zeros(CROPS, N, dtype=torch.bool)
    value = loss(outputs(loss, student, torch.randn(CROPS, N, D), empty), step())
    assert value.item() == 0.0 and value.requires_grad
    with pytest.raises(ValueError, match="differ in shape"):
        loss(StepInputs({"student": student[0], "teacher": student[0, :2].detach(), "masks": empty}), step())
    with pytest.raises(ValueError, match="embed_dim"):
        PatchPrototypeLoss(PatchPrototypeLossParams(), BuildContext())
    assert loss.prototypes.shape == (P, D) and "prototypes" in loss.state_dict()
