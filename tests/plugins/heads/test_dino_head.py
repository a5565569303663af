"""DINO / iBOT heads: architecture, unit-norm prototypes, EMA-teacher copies and checkpoints."""

from __future__ import annotations

import copy
import dataclasses

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from sslkit.components import BuildContext, Head
from sslkit.params import field_doc, validate
from sslkit_plugins.heads.dino import DINOHead, DINOHeadParams
from sslkit_plugins.heads.ibot import IBOTHead, IBOTHeadParams

SMALL = DINOHeadParams(out_dim=50, hidden_dim=32, bottleneck_dim=8, nlayers=3)
CTX = BuildContext(embed_dim=12)


def make_head(params: DINOHeadParams = SMALL, seed: int = 0) -> DINOHead:
    torch.manual_seed(seed)
    return DINOHead(params, CTX)


def test_defaults_match_the_reference() -> None:
    params = validate(DINOHeadParams, {})
    assert (params.out_dim, params.hidden_dim, params.bottleneck_dim, params.nlayers, params.use_bn) == (
        65536,
        2048,
        256,
        3,
        False,
    )
    assert all(field_doc(f) for f in dataclasses.fields(DINOHeadParams))
    assert validate(IBOTHeadParams, {}) == IBOTHeadParams(**dataclasses.asdict(params))


def test_forward_is_mlp_then_normalise_then_unit_prototypes() -> None:
    head = make_head()
    assert isinstance(head, Head) and head.out_dim == 50
    x = torch.randn(7, 12)
    logits = head(x)
    assert logits.shape == (7, 50)
    linears = [m for m in head.mlp if isinstance(m, nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linears] == [(12, 32), (32, 32), (32, 8)]
    h = x
    for i, lin in enumerate(linears):
        h = h @ lin.weight.T + lin.bias
        if i < len(linears) - 1:
            h = F.gelu(h)
    h = h / h.norm(dim=1, keepdim=True)
    w = head.last_layer.weight
    expected = h @ (w / w.norm(dim=1, keepdim=True)).T
    torch.testing.assert_close(logits, expected)
    assert logits.abs().max() <= 1.0 + 1e-6


def test_prototype_scale_does_not_matter_and_rows_are_unit_norm() -> None:
    head = make_head()
    x = torch.randn(5, 12)
    before = head(x)
    with torch.no_grad():
        head.last_layer.weight.mul_(torch.rand(50, 1) * 10 + 0.1)  # rescale every prototype differently
    torch.testing.assert_close(head(x), before)
    norms = head.last_layer.normalized_weight().norm(dim=1)
    torch.testing.assert_close(norms, torch.ones(50))
    assert head.last_layer.weight.shape == (50, 8) and dict(head.named_children())["last_layer"] is head.last_layer


def test_last_layer_gradient_is_orthogonal_to_each_prototype() -> None:
    # weight normalisation with g fixed to 1: d(v/|v|)/dv projects out v, so the gradient of every
    # row is orthogonal to that row (the magnitude never changes to first order).
    head = make_head()
    head(torch.randn(9, 12)).pow(2).sum().backward()
    w, g = head.last_layer.weight, head.last_layer.weight.grad
    assert g is not None and g.abs().sum() > 0
    cosines = (w * g).sum(dim=1) / (w.norm(dim=1) * g.norm(dim=1))
    assert cosines.abs().max() < 1e-5


@pytest.mark.parametrize("nlayers", [1, 2, 4])
def test_number_of_layers_and_batch_norm(nlayers: int) -> None:
    params = dataclasses.replace(SMALL, nlayers=nlayers, use_bn=True)
    head = make_head(params)
    linears = [m for m in head.mlp if isinstance(m, nn.Linear)]
    norms = [m for m in head.mlp if isinstance(m, nn.BatchNorm1d)]
    gelus = [m for m in head.mlp if isinstance(m, nn.GELU)]
    assert len(linears) == nlayers and len(norms) == len(gelus) == nlayers - 1
    assert linears[0].in_features == 12 and linears[-1].out_features == 8
    assert head(torch.randn(4, 12)).shape == (4, 50)


def test_trunc_normal_init() -> None:
    head = make_head(DINOHeadParams(out_dim=4096, hidden_dim=256, bottleneck_dim=64), seed=1)
    w = head.mlp[0].weight
    # trunc_normal_(std=0.02) truncates at +-2 in absolute value (as DINO's init): a plain N(0, 0.02^2)
    assert abs(w.std().item() - 0.02) < 0.002 and abs(w.mean().item()) < 0.001
    assert head.mlp[0].bias.abs().sum() == 0
    p = head.last_layer.weight
    assert abs(p.std().item() - 0.02) < 0.002


def test_deepcopy_gives_an_independent_equal_teacher() -> None:
    student = make_head()
    teacher = copy.deepcopy(student)
    x = torch.randn(6, 12)
    torch.testing.assert_close(teacher(x), student(x))
    with torch.no_grad():
        student.last_layer.weight.add_(1.0)
    assert not torch.allclose(teacher(x), student(x))
    assert teacher.last_layer is not student.last_layer
    assert {n for n, _ in teacher.named_parameters()} == {n for n, _ in student.named_parameters()}


def test_state_dict_round_trip() -> None:
    a, b = make_head(seed=0), make_head(seed=1)
    x = torch.randn(6, 12)
    assert not torch.allclose(a(x), b(x))
    b.load_state_dict(a.state_dict())
    torch.testing.assert_close(a(x), b(x))
    assert "last_layer.weight" in a.state_dict()


def test_ibot_head_is_the_same_architecture() -> None:
    torch.manual_seed(0)
    ibot = IBOTHead(IBOTHeadParams(out_dim=50, hidden_dim=32, bottleneck_dim=8), CTX)
    dino = make_head()
    assert isinstance(ibot, DINOHead)
    assert {k: v.shape for k, v in ibot.state_dict().items()} == {k: v.shape for k, v in dino.state_dict().items()}
    x = torch.randn(3, 12)
    torch.testing.assert_close(ibot(x), dino(x))  # same seed, same init order


def test_needs_embed_dim() -> None:
    with pytest.raises(ValueError, match="embed_dim"):
        DINOHead(SMALL, BuildContext())


def test_the_prototype_layer_is_frozen_for_its_epochs() -> None:
    # DINO's appendix: the last layer gets lr 0 during the first epoch (freeze_last_layer_epochs, default 1)
    assert validate(DINOHeadParams, {}).freeze_last_layer_epochs == 1.0
    assert make_head().frozen_for_steps(1250) == {"last_layer.weight": 1250}
    head = make_head(dataclasses.replace(SMALL, trainable_norm=True, freeze_last_layer_epochs=0.5))
    assert head.frozen_for_steps(101) == {"last_layer.weight": 50, "last_layer.g": 50}  # round(50.5): even
    assert set(head.frozen_for_steps(10)) <= dict(head.named_parameters()).keys()
    ibot = IBOTHead(dataclasses.replace(IBOTHeadParams(), out_dim=4, hidden_dim=8, bottleneck_dim=4,
                                        freeze_last_layer_epochs=2.0), CTX)
    assert ibot.frozen_for_steps(30) == {"last_layer.weight": 60}


def test_empty_input() -> None:
    assert make_head()(torch.zeros(0, 12)).shape == (0, 50)


def test_magnitude_g_is_fixed_by_default_and_trainable_on_request() -> None:
    assert make_head().last_layer.g is None
    assert "last_layer.g" not in make_head().state_dict()
    head = make_head(dataclasses.replace(SMALL, trainable_norm=True))
    g = head.last_layer.g
    assert isinstance(g, nn.Parameter) and g.requires_grad and g.shape == (50, 1)
    torch.testing.assert_close(g.detach(), torch.ones(50, 1))  # initialised to 1: the same outputs as fixed g
    fixed = make_head()
    x = torch.randn(4, 12)
    torch.testing.assert_close(head(x), fixed(x))


def test_trainable_magnitude_equals_torch_weight_norm_in_value_and_gradient() -> None:
    head = make_head(dataclasses.replace(SMALL, trainable_norm=True))
    with torch.no_grad():
        head.last_layer.g.uniform_(0.5, 2.0)  # a trained, non-unit magnitude per prototype
    reference = nn.Linear(8, 50, bias=False)
    with torch.no_grad():
        reference.weight.copy_(head.last_layer.weight)
    reference = nn.utils.parametrizations.weight_norm(reference)  # W = g * v / ||v||, one norm per output row
    with torch.no_grad():
        reference.parametrizations.weight.original0.copy_(head.last_layer.g)
    z = torch.randn(9, 8)
    z = z / z.norm(dim=1, keepdim=True)
    out, expected = head.last_layer(z), reference(z)
    torch.testing.assert_close(out, expected)
    upstream = torch.randn(9, 50)
    (out * upstream).sum().backward()
    (expected * upstream).sum().backward()
    g_grad = head.last_layer.g.grad
    assert g_grad is not None and g_grad.abs().sum() > 0  # the gradient reaches g
    torch.testing.assert_close(g_grad, reference.parametrizations.weight.original0.grad)
    torch.testing.assert_close(head.last_layer.weight.grad, reference.parametrizations.weight.original1.grad)


def test_trainable_magnitude_travels_with_copies_and_checkpoints() -> None:
    params = dataclasses.replace(SMALL, trainable_norm=True)
    student = make_head(params)
    with torch.no_grad():
        student.last_layer.g.mul_(1.5)
    teacher = copy.deepcopy(student)
    x = torch.randn(5, 12)
    torch.testing.assert_close(teacher(x), student(x))
    assert teacher.last_layer.g is not student.last_layer.g
    other = make_head(params, seed=1)
    other.load_state_dict(student.state_dict())
    torch.testing.assert_close(other(x), student(x))
    assert "last_layer.g" in student.state_dict()
