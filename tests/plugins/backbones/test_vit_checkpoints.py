"""``vit`` weights to and from timm's ``vit_*_dinov2`` models and the official DINOv2 layout."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import timm
import torch
from safetensors.torch import save_file
from timm.layers import resample_abs_pos_embed
from torch import Tensor, nn

from sslkit.components import BuildContext
from sslkit.errors import SSLKitError
from sslkit.weights import initialise, read_weights
from sslkit_plugins.backbones.vit import ViT
from sslkit_plugins.backbones.vit_checkpoints import (
    detect_format,
    timm_model_kwargs,
    timm_model_name,
    to_timm_state_dict,
)
from sslkit_plugins.backbones.vit_params import ViTParams

IMG = 56  # 4 x 4 patches of 14 px: small and fast


def ours(**kwargs: object) -> ViT:
    torch.manual_seed(0)
    return ViT(ViTParams(**{"img_size": IMG, **kwargs}), BuildContext()).eval()


def randomize(module: nn.Module, seed: int = 1) -> None:
    """Random values everywhere (LayerScale gammas and norms included) so that every weight matters."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in module.named_parameters():
            noise = torch.randn(p.shape, generator=g) * 0.1
            p.copy_(1.0 + noise if "norm" in name and name.endswith("weight") else noise)


def timm_vit(name: str, img_size: int = IMG, **kwargs: object) -> nn.Module:
    return timm.create_model(name, pretrained=False, img_size=img_size, weight_init="skip", **kwargs).eval()


def tokens(vit: ViT, images: Tensor) -> Tensor:
    """Our outputs in timm's forward_features order: CLS, registers, patches."""
    out = vit(images)
    parts = [out.cls[:, None]] + ([out.registers] if out.registers is not None else []) + [out.patches]
    return torch.cat(parts, dim=1)


VARIANTS = [  # (timm model, our parameters)
    ("vit_small_patch14_dinov2", {"size": "small"}),
    ("vit_small_patch14_reg4_dinov2", {"size": "small", "num_register_tokens": 4}),
    ("vit_giant_patch14_dinov2", {"size": "tiny", "ffn": "swiglu"}),  # SwiGLU, giant entry point resized
]


@pytest.mark.parametrize(("name", "kwargs"), VARIANTS)
def test_timm_weights_give_identical_outputs(name: str, kwargs: dict) -> None:
    vit = ours(**kwargs)
    assert timm_model_name(vit) == name
    model = timm_vit(name, dynamic_img_size=True, **timm_model_kwargs(vit))
    randomize(model)
    result = vit.load_external_weights(model.state_dict())
    assert (result.layout, result.missing, result.unexpected, result.mismatched) == ("timm", ["mask_token"], [], [])
    torch.manual_seed(2)
    for side in (IMG, 98, 28):  # native grid, then resampled position embeddings (up and down)
        images = torch.randn(2, 3, side, side)
        with torch.no_grad():
            torch.testing.assert_close(tokens(vit, images), model.forward_features(images), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize(("name", "kwargs"), VARIANTS)
def test_exported_weights_give_identical_outputs_in_timm(name: str, kwargs: dict) -> None:
    vit = ours(**kwargs)
    randomize(vit)
    model = timm_vit(timm_model_name(vit), **timm_model_kwargs(vit))
    model.load_state_dict(to_timm_state_dict(vit), strict=True)
    images = torch.randn(2, 3, IMG, IMG)
    with torch.no_grad():
        torch.testing.assert_close(model.forward_features(images), tokens(vit, images), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("registers", [0, 4])
def test_exported_file_loads_with_timm_pretrained(registers: int, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # the weights come from the local file, never the hub
    vit = ours(size="small", num_register_tokens=registers)
    randomize(vit)
    weights, meta = vit.export_weights()
    assert meta["timm_model"] == timm_model_name(vit) and json.loads(meta["timm_model_kwargs"]) == {}
    path = tmp_path / "backbone.safetensors"
    save_file({k: v.contiguous() for k, v in weights.items()}, str(path), metadata=meta)
    overlay = {"file": str(path)}
    model = timm.create_model(
        meta["timm_model"],
        pretrained=True,
        pretrained_cfg_overlay=overlay,
        img_size=int(meta["img_size"]),
        weight_init="skip",
    ).eval()
    images = torch.randn(2, 3, IMG, IMG)
    with torch.no_grad():
        torch.testing.assert_close(model.forward_features(images), tokens(vit, images), atol=1e-5, rtol=1e-5)
    # timm's default 518 px model: timm resamples the position embedding while loading, as we do
    default = timm.create_model(meta["timm_model"], pretrained=True, pretrained_cfg_overlay=overlay, weight_init="skip")
    assert default.patch_embed.grid_size == (37, 37)
    pos = vit.position_embedding((37, 37)).detach()
    if registers:
        torch.testing.assert_close(default.pos_embed, pos[:, 1:])
        torch.testing.assert_close(default.cls_token, vit.cls_token + pos[:, :1])
    else:
        torch.testing.assert_close(default.pos_embed, pos)
    torch.testing.assert_close(default.blocks[7].mlp.fc2.weight, vit.blocks[7].mlp.fc2.weight)


def test_timm_names_and_kwargs_for_other_configurations() -> None:
    with torch.device("meta"):
        cases = [
            (ViT(ViTParams(size="base", num_register_tokens=4), BuildContext()), "vit_base_patch14_reg4_dinov2", {}),
            (ViT(ViTParams(size="giant"), BuildContext()), "vit_giant_patch14_dinov2", {}),
            (
                ViT(ViTParams(size="large", num_register_tokens=2, patch_size=16, layerscale_init=None),
                    BuildContext()),
                "vit_large_patch14_reg4_dinov2",
                {"reg_tokens": 2, "patch_size": 16},  # no LayerScale: exported as all-ones gammas
            ),
            (
                ViT(ViTParams(size="tiny", qkv_bias=False), BuildContext()),
                "vit_small_patch14_dinov2",
                {"embed_dim": 192, "num_heads": 3, "qkv_bias": False},
            ),
        ]
    for vit, name, kwargs in cases:
        assert (timm_model_name(vit), timm_model_kwargs(vit)) == (name, kwargs)


def test_no_layerscale_exports_identity_gammas_that_timm_loads() -> None:
    vit = ours(size="tiny", layerscale_init=None)
    state = to_timm_state_dict(vit)
    assert torch.equal(state["blocks.0.ls1.gamma"], torch.ones(vit.embed_dim))
    model = timm_vit(timm_model_name(vit), **timm_model_kwargs(vit))
    model.load_state_dict(state, strict=True)


def test_mlp_ratio_override_reproduces_the_hidden_width() -> None:
    vit = ours(size="tiny", mlp_ratio=3.0)
    kwargs = timm_model_kwargs(vit)
    assert "mlp_ratio" in kwargs
    model = timm_vit(timm_model_name(vit), **kwargs)
    assert model.blocks[0].mlp.fc1.out_features == vit.mlp_hidden == 576
    model.load_state_dict(to_timm_state_dict(vit), strict=True)


def official_layout(vit: ViT, chunks: int) -> dict[str, Tensor]:
    """Our weights renamed to the DINOv2 release layout, FSDP-chunked blocks, inside a training
    checkpoint (teacher / student backbones and a head)."""
    per_chunk = vit.num_layers // chunks
    state: dict[str, Tensor] = {}
    for key, value in vit.state_dict().items():
        key = key.replace("reg_token", "register_tokens").replace("mlp.fc1", "mlp.w12").replace("mlp.fc2", "mlp.w3")
        if key.startswith("blocks."):
            index = int(key.split(".")[1])
            key = f"blocks.{index // per_chunk}.{index}." + key.split(".", 2)[2]
        state[key] = value.clone()
    return state


def test_official_dinov2_layout_loads(tmp_path: Path) -> None:
    source = ours(size="tiny", ffn="swiglu", num_register_tokens=4)
    randomize(source)
    official = official_layout(source, chunks=4)
    assert "blocks.3.13.mlp.w12.weight" not in official and "blocks.2.11.mlp.w12.weight" not in official
    assert "blocks.3.11.mlp.w12.weight" in official and "register_tokens" in official
    assert detect_format(official) == "dinov2"
    teacher = {f"backbone.{k}": v for k, v in official.items()}
    teacher["dino_head.mlp.0.weight"] = torch.zeros(3, 3)
    path = tmp_path / "teacher_checkpoint.pth"
    torch.save({"teacher": teacher, "iteration": 5}, path)

    loaded = ours(size="tiny", ffn="swiglu", num_register_tokens=4)
    report = initialise(loaded, path, min_fraction=1.0, log=None)
    assert report.layout == "dinov2" and report.loaded_tensors == report.total_tensors
    for key, value in source.state_dict().items():
        torch.testing.assert_close(loaded.state_dict()[key], value, rtol=0, atol=0, msg=key)


def test_training_checkpoint_prefers_the_teacher(tmp_path: Path) -> None:
    student, teacher = ours(size="tiny"), ours(size="tiny")
    randomize(student, seed=3)
    randomize(teacher, seed=4)
    model = {f"student.backbone.{k}": v for k, v in student.state_dict().items()}
    model.update({f"teacher.backbone.{k}": v for k, v in teacher.state_dict().items()})
    path = tmp_path / "model_0001249.rank_0.pth"
    torch.save({"model": model}, path)
    torch.testing.assert_close(read_weights(path).state["cls_token"], teacher.cls_token.detach())


def test_sslkit_checkpoint_gives_its_teacher_backbone(tmp_path: Path) -> None:
    student, teacher = ours(size="tiny", num_register_tokens=4), ours(size="tiny", num_register_tokens=4)
    randomize(teacher, seed=5)
    head = {"heads.dino.last_layer.weight": torch.zeros(4, 4)}
    payload = {
        "format": "sslkit-checkpoint",
        "step": 7,
        "student": {**{f"backbone.{k}": v for k, v in student.state_dict().items()}, **head},
        "teacher": {**{f"backbone.{k}": v for k, v in teacher.state_dict().items()}, **head},
    }
    path = tmp_path / "step_00000007.pt"
    torch.save(payload, path)
    loaded = ours(size="tiny", num_register_tokens=4)
    assert initialise(loaded, path, min_fraction=1.0, log=None).kind == "sslkit"
    torch.testing.assert_close(loaded.reg_token, teacher.reg_token)
    torch.testing.assert_close(loaded.blocks[11].ls2.gamma, teacher.blocks[11].ls2.gamma)


def test_position_embedding_of_another_grid_is_resampled(tmp_path: Path) -> None:
    big = ours(size="tiny", img_size=98)  # 7 x 7 grid
    randomize(big)
    path = tmp_path / "big.safetensors"
    save_file(big.state_dict(), str(path))
    small = ours(size="tiny")  # 4 x 4 grid
    report = initialise(small, path, min_fraction=1.0, log=None)
    assert report.reshaped == {"pos_embed": "grid 7x7 -> 4x4 (bicubic)"}
    want = resample_abs_pos_embed(big.pos_embed.detach(), [4, 4], num_prefix_tokens=1)
    torch.testing.assert_close(small.pos_embed.detach(), want)


def test_timm_layout_keeps_our_mask_token() -> None:
    vit = ours(size="tiny")
    with torch.no_grad():
        vit.mask_token.fill_(0.5)
    state = to_timm_state_dict(ours(size="tiny"))
    assert detect_format(state) == "timm"
    assert vit.load_external_weights(state).missing == ["mask_token"]
    assert torch.all(vit.mask_token == 0.5)


def test_mismatches_are_reported_and_too_little_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "registers.pth"
    torch.save(ours(size="tiny", num_register_tokens=4).state_dict(), path)
    report = initialise(ours(size="tiny"), path, log=None)
    assert report.unexpected == ["reg_token"] and report.loaded_tensors == report.total_tensors
    with torch.device("meta"):
        base = ViT(ViTParams(size="base", img_size=IMG), BuildContext()).state_dict()
    big = tmp_path / "base.pth"
    torch.save({k: torch.zeros(v.shape) for k, v in base.items()}, big)
    with pytest.raises(
        SSLKitError,
        match=r"base\.pth: only 0\.0% of the backbone's tensors[\s\S]*read as dinov2 layout; width 768, patch 14, "
        r"12 blocks: size 'base'\)[\s\S]*shape mismatch \(175\): cls_token \(1, 1, 768\) \(model \(1, 1, 192\)\)",
    ):
        initialise(ours(size="tiny"), big, log=None)
    with pytest.raises(SSLKitError, match="does not exist"):
        initialise(ours(size="tiny"), tmp_path / "missing.pth")
    garbage = tmp_path / "garbage.pth"
    garbage.write_text("not a checkpoint")
    with pytest.raises(SSLKitError, match="cannot read"):
        initialise(ours(size="tiny"), garbage)
    nested = tmp_path / "nested.pth"
    torch.save({"optimizer": {"lr": 1.0}}, nested)
    with pytest.raises(SSLKitError, match="top-level keys: optimizer"):
        read_weights(nested)
