"""The optimizer's groups follow the schedules; the EMA update follows its formula."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from sslkit.components import ParamGroup
from sslkit.engine.ema import ema_update
from sslkit.engine.optimizer import apply_schedules, build_optimizer, check_groups
from sslkit.errors import SSLKitError


def _groups(model: nn.Module, *, buggy: bool = False) -> list[ParamGroup]:
    return [
        ParamGroup("body/decay", [model[0].weight], lr_multiplier=0.5, wd_multiplier=1.0),
        ParamGroup("body/no_decay", [model[0].bias], lr_multiplier=0.5, wd_multiplier=0.0,
                   follows_wd_schedule=not buggy),
        ParamGroup("head/frozen_3", [model[1].weight, model[1].bias], frozen_steps=3,
                   follows_wd_schedule=not buggy),
    ]


def test_every_group_gets_schedule_times_multiplier() -> None:
    model = nn.Sequential(nn.Linear(3, 3), nn.Linear(3, 2))
    groups = _groups(model)
    optimizer = build_optimizer(groups, (0.9, 0.999), 1e-8, "auto", torch.device("cpu"))
    apply_schedules(optimizer, groups, lr=0.1, weight_decay=0.2, step=3)
    assert [g["lr"] for g in optimizer.param_groups] == pytest.approx([0.05, 0.05, 0.1])
    assert [g["weight_decay"] for g in optimizer.param_groups] == pytest.approx([0.2, 0.0, 0.2])
    for step in (0, 2):  # the group's first frozen_steps steps
        apply_schedules(optimizer, groups, lr=0.1, weight_decay=0.3, step=step)
        assert [g["lr"] for g in optimizer.param_groups] == pytest.approx([0.05, 0.05, 0.0])
        assert optimizer.param_groups[2]["weight_decay"] == pytest.approx(0.3)


def test_groups_opting_out_keep_their_fixed_weight_decay() -> None:
    model = nn.Sequential(nn.Linear(3, 3), nn.Linear(3, 2))
    groups = _groups(model, buggy=True)
    optimizer = build_optimizer(groups, (0.9, 0.999), 1e-8, "for_loop", torch.device("cpu"))
    apply_schedules(optimizer, groups, lr=0.1, weight_decay=0.4, step=5)
    assert [g["weight_decay"] for g in optimizer.param_groups] == pytest.approx([0.4, 0.01, 0.01])


def test_group_checks_catch_missing_and_duplicated_parameters() -> None:
    model = nn.Sequential(nn.Linear(3, 3), nn.Linear(3, 2))
    with pytest.raises(SSLKitError, match=r"in no group: 1\.weight, 1\.bias"):
        check_groups(model, _groups(model)[:2])
    twice = [*_groups(model), ParamGroup("again", [model[0].weight])]
    with pytest.raises(SSLKitError, match="'body/decay' and 'again'"):
        check_groups(model, twice)


def test_ema_update_is_m_teacher_plus_one_minus_m_student() -> None:
    torch.manual_seed(0)
    student, teacher = nn.Linear(4, 4), nn.Linear(4, 4)
    before = {n: p.detach().clone() for n, p in teacher.named_parameters()}
    ema_update(teacher, student, 0.9)
    for name, p in teacher.named_parameters():
        expected = 0.9 * before[name] + 0.1 * dict(student.named_parameters())[name].detach()
        torch.testing.assert_close(p.detach(), expected)
    ema_update(teacher, student, 1.0)
    ema_update(teacher, student, 1.0)
    torch.testing.assert_close(teacher.weight, 0.9 * before["weight"] + 0.1 * student.weight.detach())


def test_ema_copies_running_statistics_so_the_eval_mode_teacher_normalises_like_the_student() -> None:
    student = torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.BatchNorm1d(4))
    teacher = copy.deepcopy(student).eval()
    student.train()
    student(torch.randn(16, 4) * 3 + 5)  # moves the student's running statistics
    ema_update(teacher, student, momentum=0.9)
    assert torch.equal(teacher[1].running_mean, student[1].running_mean)
    assert torch.equal(teacher[1].running_var, student[1].running_var)
    assert teacher[1].num_batches_tracked == 0  # integer counters stay the teacher's own
