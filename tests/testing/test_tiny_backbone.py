"""The tiny test backbone: the Backbone contract's shapes, masking and determinism."""

from __future__ import annotations

import pytest
import torch

from sslkit.components import Backbone
from sslkit.testing import TinyPatchBackbone


def test_outputs_cls_and_patch_tokens_of_the_grid() -> None:
    torch.manual_seed(0)
    model = TinyPatchBackbone(embed_dim=12, patch_size=2, grid=3)
    assert isinstance(model, Backbone) and model.supports_masking and model.supports_patch_tokens
    out = model(torch.randn(5, 3, 6, 6))
    assert out.cls.shape == (5, 12) and out.patches.shape == (5, 9, 12)
    # final LayerNorm: every token has zero mean and unit variance over its features
    assert torch.allclose(out.patches.mean(dim=-1), torch.zeros(5, 9), atol=1e-5)


def test_masked_patches_are_replaced_by_the_mask_token() -> None:
    torch.manual_seed(0)
    model = TinyPatchBackbone(embed_dim=8, patch_size=2, grid=2).eval()
    images = torch.randn(2, 3, 4, 4)
    masks = torch.tensor([[True, False, False, False], [False, False, False, False]])
    other = images.clone()
    other[0, :, :2, :2] = torch.randn(3, 2, 2)  # change only patch 0 of image 0, which is masked
    a, b = model(images, masks), model(other, masks)
    assert torch.allclose(a.patches, b.patches) and torch.allclose(a.cls, b.cls)
    unmasked = model(other)
    assert not torch.allclose(unmasked.patches[0, 0], a.patches[0, 0])


def test_a_wrong_image_size_is_a_clear_error() -> None:
    model = TinyPatchBackbone(embed_dim=8, patch_size=4, grid=4)
    with pytest.raises(ValueError, match="expects 16 patches per image, got 4"):
        model(torch.randn(1, 3, 8, 8))
