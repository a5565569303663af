"""Tests of the ``dinov2`` param-group policy on a ViT-L-shaped student (24 blocks, tiny widths)."""

from __future__ import annotations

import pytest
import torch
from torch import Tensor, nn

from sslkit.components import Backbone, BackboneOutput, BuildContext, Head, Loss, ParamGroup, ParamGroupPolicy
from sslkit.errors import SSLKitError
from sslkit_plugins.backbones.vit import ViT
from sslkit_plugins.backbones.vit_params import ViTParams
from sslkit_plugins.heads.dino import DINOHead, DINOHeadParams
from sslkit_plugins.param_groups.dinov2 import DINOv2Groups, DINOv2GroupsParams

DIM = 4


class Block(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(DIM)
        self.attn = nn.Module()
        self.attn.qkv = nn.Linear(DIM, 3 * DIM)
        self.attn.proj = nn.Linear(DIM, DIM)
        self.ls1 = nn.Module()
        self.ls1.gamma = nn.Parameter(torch.full((DIM,), 1e-5))
        self.norm2 = nn.LayerNorm(DIM)
        self.mlp = nn.Module()
        self.mlp.fc1 = nn.Linear(DIM, 4 * DIM)
        self.mlp.fc2 = nn.Linear(4 * DIM, DIM)
        self.ls2 = nn.Module()
        self.ls2.gamma = nn.Parameter(torch.full((DIM,), 1e-5))


class ViTShaped(Backbone):
    """Parameter names and layer ids of a DINOv2 ViT-L (24 blocks), with width 4."""

    embed_dim = DIM
    patch_size = 2
    num_layers = 24

    def __init__(self) -> None:
        super().__init__()
        self.cls_token = nn.Parameter(torch.zeros(1, 1, DIM))
        self.pos_embed = nn.Parameter(torch.zeros(1, 5, DIM))
        self.mask_token = nn.Parameter(torch.zeros(1, DIM))
        self.patch_embed = nn.Module()
        self.patch_embed.proj = nn.Conv2d(3, DIM, 2, 2)
        self.blocks = nn.ModuleList(Block() for _ in range(self.num_layers))
        self.norm = nn.LayerNorm(DIM)

    def forward(self, images: Tensor, masks: Tensor | None = None) -> BackboneOutput:
        return BackboneOutput(cls=self.patch_embed.proj(images).mean((2, 3)))

    def layer_id(self, param_name: str) -> int:
        if param_name.startswith(("cls_token", "pos_embed", "mask_token", "patch_embed")):
            return 0
        if param_name.startswith("blocks."):
            return int(param_name.split(".")[1]) + 1
        return self.num_layers + 1


class TinyHead(Head):
    out_dim = 6

    def __init__(self) -> None:
        super().__init__()
        self.mlp = nn.Sequential(nn.Linear(DIM, 8), nn.GELU(), nn.Linear(8, 3))
        self.last_layer = nn.utils.parametrizations.weight_norm(nn.Linear(3, self.out_dim, bias=False))

    def frozen_for_steps(self, epoch_length: int) -> dict[str, int]:
        return {f"last_layer.{name}": epoch_length for name, _ in self.last_layer.named_parameters()}


class Predictor(Head):
    """A student-only module that freezes its output layer for 7 steps."""

    out_dim = 3

    def __init__(self) -> None:
        super().__init__()
        self.hidden = nn.Linear(6, 5)
        self.out = nn.Linear(5, 3)

    def frozen_for_steps(self, epoch_length: int) -> dict[str, int]:
        return {"out.weight": 7, "out.bias": 7}


class PrototypeLoss(Loss):
    def __init__(self) -> None:
        super().__init__()
        self.prototypes = nn.Parameter(torch.randn(5, DIM))
        self.log_scale = nn.Parameter(torch.zeros(1))  # 1-D: no weight decay whatever its name


class Student(nn.Module):
    def __init__(self, backbone: Backbone | None = None) -> None:
        super().__init__()
        self.backbone = backbone if backbone is not None else ViTShaped()
        self.heads = nn.ModuleDict({"dino": TinyHead(), "ibot": TinyHead()})
        self.student_modules = nn.ModuleDict()
        self.losses = nn.ModuleDict({"patch_proto": PrototypeLoss()})


def settings(groups: list[ParamGroup], model: nn.Module) -> dict[str, ParamGroup]:
    """Parameter name -> its group; asserts every trainable parameter is in exactly one group."""
    by_id: dict[int, ParamGroup] = {}
    for group in groups:
        for p in group.params:
            assert id(p) not in by_id, "parameter in two groups"
            by_id[id(p)] = group
    trainable = {n: p for n, p in model.named_parameters() if p.requires_grad}
    assert len(by_id) == len(trainable)
    return {n: by_id[id(p)] for n, p in trainable.items()}


def test_lr_and_weight_decay_multipliers_of_a_vit_l() -> None:
    model = Student()
    policy = DINOv2Groups(DINOv2GroupsParams(), BuildContext(epoch_length=40))
    assert isinstance(policy, ParamGroupPolicy)
    groups = policy.groups(model)
    of = settings(groups, model)
    lr = {n: g.lr_multiplier for n, g in of.items()}
    wd = {n: g.wd_multiplier for n, g in of.items()}
    assert lr["backbone.patch_embed.proj.weight"] == pytest.approx(0.9**25 * 0.2)
    assert lr["backbone.patch_embed.proj.bias"] == pytest.approx(0.9**25 * 0.2)
    for name in ("cls_token", "pos_embed", "mask_token"):
        assert lr[f"backbone.{name}"] == pytest.approx(0.9**25)
        assert wd[f"backbone.{name}"] == 1.0
    for block, expected in ((0, 0.9**24), (12, 0.9**12), (23, 0.9**1)):
        for suffix in ("attn.qkv.weight", "attn.qkv.bias", "norm1.weight", "ls1.gamma", "mlp.fc2.weight"):
            assert lr[f"backbone.blocks.{block}.{suffix}"] == pytest.approx(expected)
    for name in (
        "backbone.norm.weight",
        "heads.dino.mlp.0.weight",
        "heads.ibot.last_layer.parametrizations.weight.original1",
        "losses.patch_proto.prototypes",
    ):
        assert lr[name] == 1.0
    params = dict(model.named_parameters())
    for name, mult in wd.items():
        module, leaf = name.split(".")[-2:]
        no_decay = leaf in ("bias", "gamma") or "norm" in module or params[name].ndim <= 1
        assert mult == (0.0 if no_decay else 1.0), name
    assert wd["losses.patch_proto.log_scale"] == 0.0 and wd["backbone.blocks.5.ls2.gamma"] == 0.0
    frozen = {n: g.frozen_steps for n, g in of.items() if g.frozen_steps}
    assert frozen == {
        f"heads.{h}.last_layer.parametrizations.weight.original{i}": 40 for h in ("dino", "ibot") for i in (0, 1)
    }
    assert all(g.follows_wd_schedule for g in groups)


def test_groups_are_merged_and_meaningfully_named() -> None:
    model = Student()
    groups = DINOv2Groups(DINOv2GroupsParams(), BuildContext()).groups(model)
    names = [g.name for g in groups]
    assert len(set(names)) == len(names)
    keys = [(g.lr_multiplier, g.wd_multiplier, g.frozen_steps) for g in groups]
    assert len(set(keys)) == len(keys)  # identical settings share one group
    # layer 0 decay (tokens), patch_embed decay / no_decay, 24 blocks x 2, layer 25 decay / no_decay, last layer
    assert len(groups) == 1 + 2 + 48 + 2 + 1
    by_name = {g.name: g for g in groups}
    assert by_name["layer_0/patch_embed/decay"].params == [model.backbone.patch_embed.proj.weight]
    assert by_name["layer_13/no_decay"].lr_multiplier == pytest.approx(0.9**12)
    assert by_name["layer_25/decay/frozen_1250"].frozen_steps == 1250  # BuildContext's default epoch length
    flat = DINOv2Groups(DINOv2GroupsParams(layer_decay=1.0, patch_embed_lr_mult=1.0), BuildContext()).groups(model)
    assert sorted(g.name for g in flat) == ["layer_25/decay/frozen_1250", "layers_0-25/decay",
                                                "layers_0-25/no_decay"]
    assert all(g.lr_multiplier == 1.0 for g in flat)


def test_frozen_parameters_are_skipped_and_optimizer_builds() -> None:
    model = Student()
    model.backbone.pos_embed.requires_grad_(False)
    model.heads["ibot"].requires_grad_(False)
    groups = DINOv2Groups(DINOv2GroupsParams(), BuildContext()).groups(model)
    grouped = {id(p) for g in groups for p in g.params}
    assert id(model.backbone.pos_embed) not in grouped
    assert not any(id(p) in grouped for p in model.heads["ibot"].parameters())
    settings(groups, model)
    optimizer = torch.optim.AdamW([{"params": g.params, "lr": 1e-3 * g.lr_multiplier} for g in groups], foreach=True)
    model.backbone(torch.randn(2, 3, 4, 4)).cls.sum().backward()
    optimizer.step()


def test_the_vit_backbone_large() -> None:
    with torch.device("meta"):  # ViT-L's real names and shapes without allocating 300M parameters
        backbone = ViT(ViTParams(size="large", img_size=28, patch_size=14, num_register_tokens=4), BuildContext())
    model = Student(backbone)
    of = settings(DINOv2Groups(DINOv2GroupsParams(), BuildContext()).groups(model), model)
    lr = {n: g.lr_multiplier for n, g in of.items()}
    wd = {n: g.wd_multiplier for n, g in of.items()}
    assert lr["backbone.patch_embed.proj.weight"] == pytest.approx(0.9**25 * 0.2)
    for name in ("cls_token", "pos_embed", "mask_token", "reg_token"):
        assert lr[f"backbone.{name}"] == pytest.approx(0.9**25) and wd[f"backbone.{name}"] == 1.0
    assert lr["backbone.blocks.0.attn.qkv.weight"] == pytest.approx(0.9**24)
    assert lr["backbone.blocks.12.mlp.fc1.weight"] == pytest.approx(0.9**12)
    assert lr["backbone.blocks.23.ls2.gamma"] == pytest.approx(0.9)
    assert lr["backbone.norm.weight"] == 1.0 and lr["heads.dino.mlp.0.weight"] == 1.0
    for name, mult in wd.items():
        if name.startswith("backbone.blocks."):
            leaf = name.split(".", 3)[3]
            no_decay = name.endswith(".bias") or leaf.startswith(("norm1", "norm2", "ls1", "ls2"))
            assert mult == (0.0 if no_decay else 1.0), name
    assert wd["backbone.patch_embed.proj.bias"] == 0.0 and wd["backbone.norm.weight"] == 0.0


def test_trainable_weight_norm_magnitude_is_last_layer_with_weight_decay() -> None:
    # DINOv2's head: g of the prototype layer is trained, frozen with the last layer, weight decay multiplier 1
    model = Student()
    model.heads["dino"] = DINOHead(DINOHeadParams(out_dim=6, hidden_dim=8, bottleneck_dim=3, trainable_norm=True),
                                   BuildContext(embed_dim=DIM))
    of = settings(DINOv2Groups(DINOv2GroupsParams(), BuildContext(epoch_length=10)).groups(model), model)
    g = of["heads.dino.last_layer.g"]
    assert g.frozen_steps == 10 and g.wd_multiplier == 1.0 and g.lr_multiplier == 1.0 and g.follows_wd_schedule
    assert of["heads.dino.last_layer.weight"] is g  # one group with the prototypes


def test_student_modules_freeze_their_parameters_in_groups_of_their_own() -> None:
    model = Student()
    model.student_modules["predictor"] = Predictor()
    groups = DINOv2Groups(DINOv2GroupsParams(), BuildContext(epoch_length=40)).groups(model)
    of = settings(groups, model)
    assert of["student_modules.predictor.out.weight"].frozen_steps == 7
    assert of["student_modules.predictor.out.bias"].frozen_steps == 7
    assert of["student_modules.predictor.hidden.weight"].frozen_steps == 0
    # same lr and weight decay as the heads' prototype layers, different frozen steps: never merged
    prototypes = of["heads.dino.last_layer.parametrizations.weight.original1"]
    assert of["student_modules.predictor.out.weight"] is not prototypes and prototypes.frozen_steps == 40


def test_frozen_for_steps_must_name_parameters_of_the_module() -> None:
    model = Student()
    model.student_modules["predictor"] = Predictor()
    model.student_modules["predictor"].frozen_for_steps = lambda epoch_length: {"missing.weight": 3}
    with pytest.raises(SSLKitError, match=r"student_modules.predictor \(Predictor\): .*'missing.weight'"):
        DINOv2Groups(DINOv2GroupsParams(), BuildContext()).groups(model)


def test_a_backbone_that_is_not_a_backbone_is_named() -> None:
    model = nn.Module()
    model.backbone = nn.Linear(DIM, DIM)
    with pytest.raises(SSLKitError, match=r"dinov2: the model's 'backbone' is a Linear, not an sslkit Backbone"):
        DINOv2Groups(DINOv2GroupsParams(), BuildContext()).groups(model)
