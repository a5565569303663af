"""The ``vit`` backbone: sizes, outputs, masking, position-embedding resampling, layer ids."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from timm.layers import resample_abs_pos_embed

from sslkit.components import BuildContext
from sslkit.errors import SSLKitError
from sslkit_plugins.backbones.vit import ViT
from sslkit_plugins.backbones.vit_params import VIT_SIZES, ViTParams


def make(**kwargs: object) -> ViT:
    torch.manual_seed(0)
    return ViT(ViTParams(**kwargs), BuildContext()).eval()


def expected_param_count(size: str, img: int, patch: int = 14, registers: int = 0) -> int:
    """Parameter count from the architecture (ViT, Dosovitskiy et al. 2021; DINOv2 sizes), computed independently."""
    d, depth, _ = VIT_SIZES[size]
    if size == "giant":  # SwiGLU, hidden 2/3 * 4d rounded up to a multiple of 8
        h = (int(4 * d * 2 / 3) + 7) // 8 * 8
        ffn = d * 2 * h + 2 * h + h * d + d
    else:
        h = 4 * d
        ffn = d * h + h + h * d + d
    block = 2 * 2 * d + (3 * d * d + 3 * d) + (d * d + d) + 2 * d + ffn
    embeddings = 3 * patch * patch * d + d + d + (1 + (img // patch) ** 2) * d + d + registers * d
    return embeddings + depth * block + 2 * d


@pytest.mark.parametrize("size", ["tiny", "small", "base", "large", "giant"])
def test_parameter_count_of_every_size(size: str) -> None:
    with torch.device("meta"):
        vit = ViT(ViTParams(size=size, num_register_tokens=4), BuildContext())
    count = sum(p.numel() for p in vit.parameters())
    assert count == expected_param_count(size, 224, registers=4)
    assert (vit.embed_dim, vit.num_layers) == VIT_SIZES[size][:2]
    assert vit.blocks[0].attn.num_heads == VIT_SIZES[size][2]


def test_parameter_counts_are_the_published_ones() -> None:
    with torch.device("meta"):
        counts = {s: sum(p.numel() for p in ViT(ViTParams(size=s), BuildContext()).parameters())
                  for s in ("small", "base", "giant")}
    assert 21e6 < counts["small"] < 23e6  # ViT-S/14 ~22M
    assert 85e6 < counts["base"] < 87e6  # ViT-B/14 ~86M
    assert 1.1e9 < counts["giant"] < 1.2e9  # ViT-g/14 ~1.1B


def test_feed_forward_choice() -> None:
    with torch.device("meta"):
        giant = ViT(ViTParams(size="giant"), BuildContext())
        tiny_glu = ViT(ViTParams(size="tiny", ffn="swiglu"), BuildContext())
        giant_mlp = ViT(ViTParams(size="giant", ffn="mlp"), BuildContext())
    assert giant.ffn_kind == "swiglu" and giant.blocks[0].mlp.fc1.out_features == 2 * 4096
    assert tiny_glu.ffn_kind == "swiglu" and giant_mlp.blocks[0].mlp.fc1.out_features == 4 * 1536


@pytest.mark.parametrize("size", ["tiny", "small", "base"])
def test_output_shapes(size: str) -> None:
    vit = make(size=size, img_size=28, num_register_tokens=2)
    out = vit(torch.randn(2, 3, 28, 42))  # non-square: 2 x 3 patches
    d = VIT_SIZES[size][0]
    assert out.cls.shape == (2, d) and out.patches.shape == (2, 6, d) and out.registers.shape == (2, 2, d)
    assert vit.patch_size == 14 and vit.supports_masking and vit.supports_patch_tokens


def test_outputs_are_the_final_layer_norm_of_the_tokens() -> None:
    vit = make(size="tiny", img_size=28, num_register_tokens=2)
    with torch.no_grad():
        vit.norm.weight.normal_()
        vit.norm.bias.normal_()
    captured: list[torch.Tensor] = []
    vit.norm.register_forward_pre_hook(lambda _module, args: captured.append(args[0]))
    out = vit(torch.randn(2, 3, 28, 28))
    want = F.layer_norm(captured[0], (192,), vit.norm.weight, vit.norm.bias, eps=1e-6)
    torch.testing.assert_close(out.cls, want[:, 0])
    torch.testing.assert_close(out.registers, want[:, 1:3])
    torch.testing.assert_close(out.patches, want[:, 3:])
    assert make(size="tiny", img_size=28)(torch.randn(1, 3, 28, 28)).registers is None


def test_initialisation() -> None:
    vit = make(size="small", num_register_tokens=4, img_size=56)
    assert vit.cls_token.abs().max() < 1e-4 and vit.reg_token.abs().max() < 1e-4
    assert torch.count_nonzero(vit.mask_token) == 0
    assert abs(vit.blocks[0].attn.qkv.weight.std().item() - 0.02) < 1e-3
    assert abs(vit.pos_embed.std().item() - 0.02) < 2e-3
    assert torch.count_nonzero(vit.blocks[3].mlp.fc1.bias) == 0
    torch.testing.assert_close(vit.blocks[5].ls2.gamma, torch.full((384,), 1e-5))
    assert not any("gamma" in n for n, _ in make(size="tiny", layerscale_init=None).named_parameters())


def test_mask_token_replaces_exactly_the_masked_patch_embeddings_before_the_position_embedding() -> None:
    vit = make(size="tiny", img_size=42, num_register_tokens=1)
    with torch.no_grad():
        vit.mask_token.normal_()
    images = torch.randn(2, 3, 42, 42)
    masks = torch.zeros(2, 9, dtype=torch.bool)
    masks[0, [1, 4]] = True
    masks[1, 8] = True
    plain, masked = vit.prepare_tokens(images)[0], vit.prepare_tokens(images, masks)[0]
    differs = (plain != masked).any(-1)  # [B, 1 + 1 + 9]
    assert torch.equal(differs[:, 2:], masks) and not differs[:, :2].any()
    expected = vit.mask_token[0] + vit.pos_embed[0, 1:][masks.nonzero()[:, 1]]
    torch.testing.assert_close(masked[:, 2:][masks], expected)
    no_mask = torch.zeros_like(masks)
    torch.testing.assert_close(vit(images, no_mask).patches, vit(images).patches)
    assert not torch.allclose(vit(images, masks).patches, vit(images).patches)


def test_mask_token_receives_gradient_only_when_masks_are_used() -> None:
    vit = make(size="tiny", img_size=28).train()
    images = torch.randn(2, 3, 28, 28)
    vit(images).patches.sum().backward()
    assert vit.mask_token.grad is None or torch.count_nonzero(vit.mask_token.grad) == 0
    masks = torch.tensor([[True, False, False, True], [False, False, False, False]])
    vit(images, masks).patches.square().sum().backward()
    assert torch.count_nonzero(vit.mask_token.grad) > 0


def test_position_embedding_is_used_as_is_for_the_native_grid() -> None:
    vit = make(size="tiny", img_size=56)
    assert vit.position_embedding((4, 4)) is vit.pos_embed


@pytest.mark.parametrize("antialias", [True, False])
def test_position_embedding_is_bicubically_resampled_for_other_sizes(antialias: bool) -> None:
    vit = make(size="tiny", img_size=56, pos_embed_antialias=antialias)
    for grid in ((2, 2), (6, 6), (3, 5)):
        got = vit.position_embedding(grid)
        if antialias:  # timm's resampling, an independent implementation
            want = resample_abs_pos_embed(vit.pos_embed, list(grid), old_size=[4, 4], num_prefix_tokens=1)
        else:
            patches = vit.pos_embed[:, 1:].reshape(1, 4, 4, -1).permute(0, 3, 1, 2)
            patches = F.interpolate(patches, size=grid, mode="bicubic", align_corners=False)
            want = torch.cat([vit.pos_embed[:, :1], patches.flatten(2).transpose(1, 2)], dim=1)
        torch.testing.assert_close(got, want)
    assert vit(torch.randn(1, 3, 84, 70)).patches.shape == (1, 30, 192)


def test_invalid_inputs_raise_clear_errors() -> None:
    vit = make(size="tiny", img_size=28)
    with pytest.raises(SSLKitError, match="not a multiple of the patch size 14"):
        vit(torch.randn(1, 3, 30, 28))
    with pytest.raises(SSLKitError, match=r"expected \(1, 4\)"):
        vit(torch.randn(1, 3, 28, 28), torch.zeros(1, 5, dtype=torch.bool))
    with pytest.raises(SSLKitError, match="img_size 30 is not a multiple of patch_size 14"):
        ViT(ViTParams(size="tiny", img_size=30), BuildContext())


def test_drop_path_only_in_training() -> None:
    dropped = make(size="tiny", img_size=28, drop_path_rate=0.4)
    plain = make(size="tiny", img_size=28)
    images = torch.randn(4, 3, 28, 28)
    torch.testing.assert_close(dropped(images).cls, plain(images).cls)
    dropped.train()
    assert not torch.allclose(dropped(images).cls, dropped(images).cls)


def test_drop_path_schedule() -> None:
    uniform = make(size="tiny", drop_path_rate=0.3)
    ramp = make(size="tiny", drop_path_rate=0.3, drop_path_uniform=False)
    assert [b.drop_path_rate for b in uniform.blocks] == [0.3] * 12
    rates = [b.drop_path_rate for b in ramp.blocks]
    assert rates[0] == 0.0 and rates[-1] == pytest.approx(0.3) and rates == sorted(rates)


def test_layer_ids() -> None:
    vit = make(size="tiny", num_register_tokens=2)
    ids = {name: vit.layer_id(name) for name, _ in vit.named_parameters()}
    for name in (
        "patch_embed.proj.weight",
        "patch_embed.proj.bias",
        "pos_embed",
        "cls_token",
        "mask_token",
        "reg_token",
    ):
        assert ids[name] == 0
    assert ids["blocks.0.attn.qkv.weight"] == 1
    assert ids["blocks.11.ls2.gamma"] == 12
    assert ids["norm.weight"] == ids["norm.bias"] == 13
    assert vit.layer_id("backbone.blocks.4.mlp.fc1.weight") == 5
    assert set(ids.values()) == set(range(14))
