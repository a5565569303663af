"""Parameters that no loss of the recipe trains are frozen before DDP/FSDP2 and the optimizer see
them (the mask token without a masking loss, heads no loss applies); a trainable parameter that
stays without a gradient anyway stops the run before the first optimizer step, by name."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
import torch
from torch import Tensor, nn

import sslkit.engine.build
import sslkit.engine.trainer
from sslkit.components import BuildContext, Loss, ParamGroup, StepContext
from sslkit.engine.checkpoint import list_checkpoints, load_checkpoint
from sslkit.engine.optimizer import UnusedParameterError, check_first_step_gradients, check_groups
from sslkit.engine.trainer import Trainer
from sslkit.errors import SSLKitError
from sslkit.outputs import Output, StepInputs
from sslkit.params import param
from sslkit.recipe import load_recipe
from sslkit.registry import get_registry
from sslkit.testing import registered

IBOT = "losses.ibot={name: ibot, weight: 1.0, head: dino}"
SPARE_HEAD = "model.heads.spare={name: dino, out_dim: 16, hidden_dim: 16, bottleneck_dim: 8}"


def _optimized(trainer: Trainer) -> set[int]:
    return {id(p) for group in trainer.optimizer.param_groups for p in group["params"]}


def test_mask_token_is_trained_only_with_a_masking_loss(tmp_path, quickstart, tiny_overrides) -> None:
    without = Trainer(load_recipe(quickstart, tiny_overrides), tmp_path / "a")
    token = without.student.backbone.mask_token
    assert without.parts.frozen == ["backbone.mask_token"]
    assert not token.requires_grad and id(token) not in _optimized(without)
    with_ibot = Trainer(load_recipe(quickstart, [*tiny_overrides, IBOT]), tmp_path / "b")
    token = with_ibot.student.backbone.mask_token
    assert with_ibot.parts.frozen == [] and token.requires_grad and id(token) in _optimized(with_ibot)


def test_unused_head_is_frozen_but_kept_in_teacher_and_checkpoint(tmp_path, quickstart, tiny_overrides) -> None:
    trainer = Trainer(load_recipe(quickstart, [*tiny_overrides, SPARE_HEAD, "train.max_steps=2"]), tmp_path)
    spare = dict(trainer.student.heads["spare"].named_parameters())
    assert {f"heads.spare.{n}" for n in spare} <= set(trainer.parts.frozen)
    assert not _optimized(trainer) & {id(p) for p in spare.values()}
    initial = {n: p.detach().clone() for n, p in spare.items()}
    trainer.fit()
    saved = load_checkpoint(tmp_path)
    for name, value in initial.items():
        torch.testing.assert_close(saved["student"][f"heads.spare.{name}"], value, rtol=0, atol=0)
        torch.testing.assert_close(saved["teacher"][f"heads.spare.{name}"], value, rtol=0, atol=0)


@dataclass
class IdleParams:
    """Parameters of the test loss ``idle``."""

    width: int = param(4, "Size of the parameter the loss owns but never uses.", ge=1)


class IdleLoss(Loss):
    """Mean student CLS feature; owns a trainable parameter that it never uses (a plugin bug)."""

    def __init__(self, params: IdleParams, ctx: BuildContext) -> None:
        super().__init__()
        self.inputs = {"cls": Output("cls", model="student", crops="global")}
        self.forgotten = nn.Parameter(torch.zeros(params.width))

    def forward(self, inputs: StepInputs, ctx: StepContext) -> Tensor:
        return inputs["cls"].mean()


def test_trainable_parameter_without_gradient_stops_before_the_first_step(tmp_path, quickstart,
                                                                          tiny_overrides) -> None:
    with registered("loss", "idle", IdleLoss, IdleParams):
        trainer = Trainer(load_recipe(quickstart, [*tiny_overrides, "losses.idle={name: idle, weight: 0.1}"]),
                          tmp_path)
        before = {k: v.detach().clone() for k, v in trainer.student.state_dict().items()}
        with pytest.raises(UnusedParameterError, match=r"losses\.idle\.forgotten.*DDP"):
            trainer.fit()
    for key, value in trainer.student.state_dict().items():
        torch.testing.assert_close(value, before[key], rtol=0, atol=0)  # no optimizer step was taken
    assert list_checkpoints(tmp_path) == []


def test_gradient_check_names_every_missing_parameter_once() -> None:
    model = nn.ModuleDict({"used": nn.Linear(2, 1), "unused": nn.Linear(2, 1)})
    optimizer = torch.optim.AdamW(model.parameters())
    check_first_step_gradients(optimizer, model)
    model["used"](torch.ones(1, 2)).sum().backward()
    with pytest.raises(UnusedParameterError, match=r"2 trainable parameter\(s\).*unused\.weight, unused\.bias"):
        optimizer.step()
    optimizer.step()  # the check ran once; later steps cost nothing


def test_checkpoint_that_optimized_the_mask_token_resumes(tmp_path, quickstart, tiny_overrides, monkeypatch) -> None:
    """Checkpoints written before the freezing list the idle mask token in their optimizer groups."""
    with monkeypatch.context() as old:
        old.setattr(sslkit.engine.build, "unplanned_parameters", lambda *args: [])
        old.setattr(sslkit.engine.trainer, "check_first_step_gradients", lambda *args: None)
        Trainer(load_recipe(quickstart, [*tiny_overrides, "train.max_steps=2"]), tmp_path).fit()
    groups = load_checkpoint(tmp_path)["optimizer"]["param_groups"]
    assert any("backbone.mask_token" in group["params"] for group in groups)
    result = Trainer(load_recipe(quickstart, [*tiny_overrides, "train.max_steps=4"]), tmp_path).fit()
    assert result.completed and result.step == 4 and result.start_step == 2


@pytest.mark.parametrize(("name", "params", "expected"), [
    ("vit", {"size": "tiny", "embed_dim": 16, "depth": 1, "num_heads": 2, "patch_size": 4, "img_size": 16},
     ["mask_token"]),
    ("timm", {"model_name": "vit_tiny_patch16_224", "img_size": 32}, ["mask_token"]),
    ("timm", {"model_name": "resnet18"}, []),  # no patch tokens, no masks
])
def test_backbones_name_their_mask_only_parameters(name: str, params: dict, expected: list[str]) -> None:
    backbone = get_registry().create("backbone", name, **params)
    assert backbone.mask_only_parameters() == expected
    assert set(expected) <= dict(backbone.named_parameters()).keys()


def test_param_groups_may_not_hold_a_frozen_parameter() -> None:
    model = nn.Linear(2, 1)
    model.bias.requires_grad_(False)
    check_groups(model, [ParamGroup("all", [model.weight])])
    with pytest.raises(SSLKitError, match=r"frozen parameters.*bias \(group 'all'\)"):
        check_groups(model, [ParamGroup("all", [model.weight, model.bias])])
