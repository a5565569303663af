"""The ``timm`` backbone: ViTs with patch tokens and masks, other models CLS-only."""

from __future__ import annotations

import pytest
import timm
import torch
from torch import Tensor

from sslkit.components import BuildContext
from sslkit.errors import SSLKitError
from sslkit_plugins.backbones.timm_backbone import TimmBackbone, TimmBackboneParams


@pytest.fixture(scope="module")
def vit_tiny() -> TimmBackbone:
    torch.manual_seed(0)
    return TimmBackbone(TimmBackboneParams(model_name="vit_tiny_patch16_224", img_size=32), BuildContext()).eval()


def test_vit_outputs_match_timm_forward_features(vit_tiny: TimmBackbone) -> None:
    assert (vit_tiny.embed_dim, vit_tiny.patch_size, vit_tiny.num_layers) == (192, 16, 12)
    assert vit_tiny.supports_masking and vit_tiny.supports_patch_tokens
    images = torch.randn(2, 3, 32, 32)
    out = vit_tiny(images)
    want = vit_tiny.model.forward_features(images)
    assert out.cls.shape == (2, 192) and out.patches.shape == (2, 4, 192) and out.registers is None
    torch.testing.assert_close(out.cls, want[:, 0])
    torch.testing.assert_close(out.patches, want[:, 1:])
    assert vit_tiny(torch.randn(1, 3, 64, 48)).patches.shape == (1, 12, 192)  # other sizes: dynamic_img_size


def test_vit_mask_token_replaces_masked_patch_embeddings_before_the_position_embedding(vit_tiny: TimmBackbone) -> None:
    with torch.no_grad():
        vit_tiny.mask_token.normal_()
    captured: list[Tensor] = []
    handle = vit_tiny.model.blocks[0].register_forward_pre_hook(lambda _m, args: captured.append(args[0]))
    images = torch.randn(2, 3, 32, 32)
    masks = torch.tensor([[True, False, False, True], [False, False, True, False]])
    try:
        plain, masked = vit_tiny(images), vit_tiny(images, masks)
        unmasked_too = vit_tiny(images, torch.zeros_like(masks))
    finally:
        handle.remove()
    before, after = captured[0][:, 1:], captured[1][:, 1:]  # patch tokens entering block 0
    differs = (before != after).any(-1)
    assert torch.equal(differs, masks)
    pos = vit_tiny.model.pos_embed[0, 1:]
    torch.testing.assert_close(after[masks], vit_tiny.mask_token[0] + pos[masks.nonzero()[:, 1]])
    torch.testing.assert_close(unmasked_too.patches, plain.patches)
    assert not torch.allclose(masked.cls, plain.cls)


def test_vit_layer_ids_and_blocks(vit_tiny: TimmBackbone) -> None:
    ids = {name: vit_tiny.layer_id(name) for name, _ in vit_tiny.named_parameters()}
    assert ids["mask_token"] == ids["model.cls_token"] == ids["model.pos_embed"] == 0
    assert ids["model.patch_embed.proj.weight"] == 0
    assert ids["model.blocks.0.attn.qkv.weight"] == 1 and ids["model.blocks.11.mlp.fc2.bias"] == 12
    assert ids["model.norm.weight"] == 13
    assert vit_tiny.blocks is vit_tiny.model.blocks


def test_vit_export_is_the_timm_state_dict(vit_tiny: TimmBackbone) -> None:
    weights, meta = vit_tiny.export_weights()
    assert meta == {"format": "timm", "timm_model": "vit_tiny_patch16_224", "img_size": "32"}
    assert set(weights) == set(vit_tiny.model.state_dict())
    model = timm.create_model("vit_tiny_patch16_224", num_classes=0, img_size=32, weight_init="skip")
    model.load_state_dict(weights, strict=True)


def test_vit_with_registers_and_no_class_token() -> None:
    torch.manual_seed(0)
    params = TimmBackboneParams(model_name="vit_pwee_patch16_reg1_gap_256", img_size=32)
    backbone = TimmBackbone(params, BuildContext()).eval()
    images = torch.randn(2, 3, 32, 32)
    out = backbone(images)
    want = backbone.model.forward_features(images)
    torch.testing.assert_close(out.registers, want[:, :1])
    torch.testing.assert_close(out.patches, want[:, 1:])
    torch.testing.assert_close(out.cls, backbone.model.forward_head(want, pre_logits=True))


def test_convnet_is_cls_only_and_refuses_masks() -> None:
    torch.manual_seed(0)
    backbone = TimmBackbone(TimmBackboneParams(model_name="resnet18"), BuildContext()).eval()
    assert backbone.embed_dim == 512 and backbone.patch_size is None and backbone.num_layers == 0
    assert not backbone.supports_masking and not backbone.supports_patch_tokens and backbone.blocks is None
    images = torch.randn(2, 3, 32, 32)
    out = backbone(images)
    assert out.patches is None and out.registers is None
    torch.testing.assert_close(out.cls, backbone.model.forward_features(images).mean(dim=(2, 3)))
    with pytest.raises(SSLKitError, match=r"'resnet18' cannot take patch masks[\s\S]*iBOT"):
        backbone(images, torch.zeros(2, 1, dtype=torch.bool))
    assert backbone.layer_id("model.conv1.weight") == 1


def test_unknown_model_name_suggests_close_matches() -> None:
    with pytest.raises(SSLKitError, match=r"unknown model_name 'vit_smal_patch16_224'.*vit_small_patch16_224"):
        TimmBackbone(TimmBackboneParams(model_name="vit_smal_patch16_224"), BuildContext())


def test_options_a_model_does_not_take_are_reported() -> None:
    with pytest.raises(SSLKitError, match="cannot build 'resnet18'"):
        TimmBackbone(TimmBackboneParams(model_name="resnet18", img_size=64), BuildContext())
