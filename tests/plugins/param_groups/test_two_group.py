"""Tests of the ``two_group`` param-group policy, including the reproduced first-group-only bug."""

from __future__ import annotations

import torch
from torch import nn

from sslkit.components import BuildContext, Head, ParamGroupPolicy
from sslkit_plugins.heads.dino import DINOHead, DINOHeadParams
from sslkit_plugins.param_groups.two_group import TwoGroup, TwoGroupParams


class SmallBackbone(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.norm_in = nn.LayerNorm(4)  # a no-decay parameter registered before the first weight
        self.proj = nn.Linear(4, 4)
        self.gamma = nn.Parameter(torch.ones(4))


class SmallHead(Head):
    out_dim = 3

    def __init__(self) -> None:
        super().__init__()
        self.mlp = nn.Linear(4, 4)
        self.last_layer = nn.Linear(4, self.out_dim)

    def frozen_for_steps(self, epoch_length: int) -> dict[str, int]:
        return {"last_layer.weight": epoch_length, "last_layer.bias": epoch_length}


class Student(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.backbone = SmallBackbone()
        self.heads = nn.ModuleDict({"dino": SmallHead()})
        self.losses = nn.ModuleDict()


def test_decay_and_no_decay_with_uniform_lr() -> None:
    model = Student()
    policy = TwoGroup(TwoGroupParams(), BuildContext(epoch_length=30))
    assert isinstance(policy, ParamGroupPolicy)
    groups = policy.groups(model)
    by_name = {g.name: g for g in groups}
    assert [g.name for g in groups] == ["decay", "frozen_30/decay", "no_decay", "frozen_30/no_decay"]
    ids = lambda params: {id(p) for p in params}  # noqa: E731
    head = model.heads["dino"]
    last_layer = head.last_layer
    assert ids(by_name["decay"].params) == ids([model.backbone.proj.weight, head.mlp.weight])
    assert ids(by_name["no_decay"].params) == ids(
        [
            model.backbone.norm_in.weight,
            model.backbone.norm_in.bias,
            model.backbone.proj.bias,
            model.backbone.gamma,
            head.mlp.bias,
        ]
    )
    assert ids(by_name["frozen_30/decay"].params) == ids([last_layer.weight])
    assert ids(by_name["frozen_30/no_decay"].params) == ids([last_layer.bias])
    assert all(g.lr_multiplier == 1.0 and g.follows_wd_schedule for g in groups)
    assert [g.wd_multiplier for g in groups] == [1.0, 1.0, 0.0, 0.0]
    assert [g.frozen_steps for g in groups] == [0, 30, 0, 30]
    assert sum(len(g.params) for g in groups) == len(list(model.parameters()))


def test_schedule_first_group_only_reproduces_the_bug() -> None:
    model = Student()
    groups = TwoGroup(TwoGroupParams(schedule_first_group_only=True, fixed_weight_decay=0.01),
                      BuildContext(epoch_length=5)).groups(model)
    assert groups[0].name == "backbone/decay"
    assert groups[0].follows_wd_schedule
    assert {id(p) for p in groups[0].params} == {id(model.backbone.proj.weight)}
    assert not any(g.follows_wd_schedule for g in groups[1:])
    fixed = {g.name: g.fixed_weight_decay for g in groups[1:]}
    assert fixed == {
        "backbone/no_decay": 0.0,
        "heads/decay": 0.01,
        "heads/frozen_5/decay": 0.01,
        "heads/no_decay": 0.0,
        "heads/frozen_5/no_decay": 0.0,
    }
    assert [g.frozen_steps for g in groups].count(5) == 2
    grouped = [id(p) for g in groups for p in g.params]
    assert sorted(grouped) == sorted(id(p) for p in model.parameters())


def test_trainable_weight_norm_magnitude_is_last_layer_with_weight_decay() -> None:
    model = Student()
    model.heads["dino"] = DINOHead(DINOHeadParams(out_dim=3, hidden_dim=8, bottleneck_dim=4, trainable_norm=True),
                                   BuildContext(embed_dim=4))
    by_name = {g.name: g for g in TwoGroup(TwoGroupParams(), BuildContext(epoch_length=8)).groups(model)}
    last_layer = model.heads["dino"].last_layer
    ids = {id(p) for p in by_name["frozen_8/decay"].params}
    assert ids == {id(last_layer.weight), id(last_layer.g)}
    assert by_name["frozen_8/decay"].wd_multiplier == 1.0 and by_name["frozen_8/decay"].frozen_steps == 8
