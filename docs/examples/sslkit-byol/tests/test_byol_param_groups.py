"""The ``byol`` param-group policy: the predictor's parameters (and only they) get predictor_lr_mult,
1-D parameters get no weight decay, every trainable parameter lands in exactly one group."""

from __future__ import annotations

import pytest
from sslkit_byol import BYOLGroups, BYOLGroupsParams
from torch import nn

from sslkit.components import BuildContext
from sslkit.errors import SSLKitError


def student() -> nn.Module:
    model = nn.Module()
    model.backbone = nn.Linear(4, 4)
    model.heads = nn.ModuleDict({"projector": nn.Sequential(nn.Linear(4, 6), nn.LayerNorm(6))})
    model.student_modules = nn.ModuleDict({"predictor": nn.Linear(6, 6)})
    return model


def test_the_predictor_gets_its_multiplier_and_1d_parameters_no_decay() -> None:
    model = student()
    groups = BYOLGroups(BYOLGroupsParams(predictor_lr_mult=7.0), BuildContext(heads=("projector", "predictor")))
    found = {g.name: g for g in groups.groups(model)}
    assert set(found) == {"rest/decay", "rest/no_decay", "predictor/decay", "predictor/no_decay"}
    predictor = model.student_modules["predictor"]
    assert found["predictor/decay"].params == [predictor.weight]
    assert found["predictor/no_decay"].params == [predictor.bias]
    assert found["predictor/decay"].lr_multiplier == found["predictor/no_decay"].lr_multiplier == 7.0
    assert found["rest/decay"].lr_multiplier == found["rest/no_decay"].lr_multiplier == 1.0
    assert found["rest/no_decay"].wd_multiplier == found["predictor/no_decay"].wd_multiplier == 0.0
    assert found["rest/decay"].wd_multiplier == 1.0
    grouped = [id(p) for g in found.values() for p in g.params]
    assert sorted(grouped) == sorted(id(p) for p in model.parameters())


def test_an_unknown_predictor_is_a_clear_error() -> None:
    with pytest.raises(SSLKitError, match="predictor 'pred' is not a head"):
        BYOLGroups(BYOLGroupsParams(predictor="pred"), BuildContext(heads=("projector", "predictor")))
