"""The vit backbone's ``masking="drop"`` and ``blocks=``: dropping masked patches equals running each image
on its visible patches alone (rows of different lengths padded and hidden by the attention mask), and
block outputs are the blocks' patch tokens before the final norm."""

from __future__ import annotations

import pytest
import torch

from sslkit.components import BuildContext
from sslkit_plugins.backbones.vit import ViT
from sslkit_plugins.backbones.vit_params import ViTParams


def tiny_vit(registers: int = 0) -> ViT:
    torch.manual_seed(0)
    params = ViTParams(size="tiny", embed_dim=32, depth=2, num_heads=2, patch_size=4, img_size=16,
                       num_register_tokens=registers, drop_path_rate=0.0)
    return ViT(params, BuildContext()).eval()


def alone(model: ViT, image: torch.Tensor, keep: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """The final tokens and every block's patch tokens of one image run on its kept patches only."""
    tokens, _, _ = model.prepare_tokens(image.unsqueeze(0))
    prefix = 1 + model.num_register_tokens
    x = torch.cat([tokens[:, :prefix], tokens[:, prefix:][:, keep]], dim=1)
    blocks = []
    for block in model.blocks:
        x = block(x)
        blocks.append(x[0, prefix:])
    return model.norm(x)[0], blocks


@pytest.mark.parametrize("registers", [0, 2])
def test_dropping_equals_each_image_on_its_visible_patches_alone(registers: int) -> None:
    model = tiny_vit(registers)
    images = torch.randn(3, 3, 16, 16)
    masks = torch.zeros(3, 16, dtype=torch.bool)
    masks[0, :5] = True  # 11 visible
    masks[1, 3:12] = True  # 7 visible: padded to 11 in the batch
    out = model(images, masks, masking="drop", blocks=(0, 1))
    for i in range(3):
        keep = ~masks[i]
        final, blocks = alone(model, images[i], keep)
        prefix = 1 + registers
        torch.testing.assert_close(out.cls[i], final[0], atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(out.patches[i][keep], final[prefix:], atol=1e-5, rtol=1e-5)
        assert not out.patches[i][~keep].any(), "dropped positions must be zero"
        for b in (0, 1):
            torch.testing.assert_close(out.blocks[b][i][keep], blocks[b], atol=1e-5, rtol=1e-5)
            assert not out.blocks[b][i][~keep].any()


def test_blocks_are_before_the_final_norm_and_replace_still_uses_the_mask_token() -> None:
    model = tiny_vit()
    images = torch.randn(2, 3, 16, 16)
    out = model(images, blocks=(-1 % 2,))
    torch.testing.assert_close(model.norm(out.blocks[1]), out.patches, atol=1e-5, rtol=1e-5)
    masks = torch.zeros(2, 16, dtype=torch.bool)
    masks[:, :4] = True
    with torch.no_grad():
        model.mask_token.fill_(3.0)
    replaced = model(images, masks, masking="replace")
    dropped = model(images, masks, masking="drop")
    assert replaced.patches[masks].abs().sum() > 0 and not dropped.patches[masks].any()
    assert (replaced.cls - dropped.cls).abs().max() > 0  # the mask tokens took part in the attention
