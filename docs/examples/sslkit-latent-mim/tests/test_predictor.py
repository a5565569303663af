"""The student-only predictor and the ``latent_predictions`` producer: predictions exactly at the masked
positions, in ``masks.nonzero()`` order, from the context of their own crop; drop vs replace passes."""

from __future__ import annotations

import pytest
import torch
from conftest import EMBED, N, PassView, predictor, produce, random_masks, tiny_vit
from sslkit_latent_mim.predictor import sincos_2d

from sslkit.outputs import Output


def test_one_prediction_per_masked_position_in_nonzero_order_from_its_own_crop() -> None:
    """Batched predictions equal the per-crop predictions concatenated in crop order (masks.nonzero()
    is crop-major, then position order), and depend on the visible tokens of their crop only."""
    head = predictor(0, depth=2).eval()
    patches, masks = torch.randn(4, N, EMBED), random_masks(4, 0.6, 1)
    patches[masks] = 0.0  # as after a 'drop' pass
    with torch.no_grad():
        batched = head(patches, masks)
        per_crop = torch.cat([head(patches[i : i + 1], masks[i : i + 1]) for i in range(4)])
        assert batched.shape == (int(masks.sum()), EMBED)
        torch.testing.assert_close(batched, per_crop, rtol=1e-5, atol=1e-5)
        changed = patches.clone()
        visible = (~masks[1]).nonzero()[0, 0]
        changed[1, visible] += 1.0  # a visible token of crop 1
        moved = head(changed, masks)
    rows_of = torch.repeat_interleave(torch.arange(4), masks.sum(dim=1))
    differs = (moved - batched).abs().amax(dim=1) > 1e-6
    assert differs[rows_of == 1].all(), "the predictions of crop 1 must see its visible tokens (context)"
    assert not differs[rows_of != 1].any(), "other crops' predictions must not change"


def test_the_per_token_predictor_maps_each_masked_row_on_its_own() -> None:
    """depth 0 (for 'replace' passes): prediction i is the MLP of the i-th masked row in nonzero order."""
    head = predictor(0, depth=0).eval()
    patches, masks = torch.randn(3, N, EMBED), random_masks(3, 0.5, 2)
    with torch.no_grad():
        got = head(patches, masks)
        rows = patches[masks]
        expected = head.proj(torch.nn.functional.gelu(head.embed(rows) + head.mask_token))
    torch.testing.assert_close(got, expected)


def test_positions_are_distinct_and_follow_the_grid() -> None:
    pos = sincos_2d(16, 16, torch.device("cpu"), torch.float32)
    assert pos.shape == (16, 16)
    assert torch.cdist(pos, pos).fill_diagonal_(1.0).min() > 0.1
    with pytest.raises(ValueError, match="square grid"):
        sincos_2d(15, 16, torch.device("cpu"), torch.float32)


@pytest.mark.parametrize("masking", ["drop", "replace"])
def test_the_producer_feeds_the_vit_pass_and_the_masks_to_the_named_module(masking: str) -> None:
    backbone, head = tiny_vit(0), predictor(1)
    images, masks = torch.randn(4, 3, 16, 16), random_masks(4, 0.6, 3)
    view = PassView("student", {"backbone": backbone, "predictor": head}, images, masks)
    request = Output("latent_predictions", masking=masking, positions="masked", modules=("predictor",))
    with torch.no_grad():
        got = produce(request, view)
        patches = backbone(images, masks, masking=masking).patches
        torch.testing.assert_close(got, head(patches, masks))
    assert got.shape == (int(masks.sum()), EMBED)
    assert bool((patches[masks] == 0).all()) == (masking == "drop"), "drop zeroes the masked rows"


def test_wrong_input_is_a_clear_error() -> None:
    head = predictor(0)
    with pytest.raises(ValueError, match=r"patch tokens \[C, N, 32\] and masks \[C, N\]"):
        head(torch.randn(5, N, EMBED + 1), random_masks(5, 0.5, 0))
    view = PassView("student", {"backbone": tiny_vit(0), "predictor": head}, torch.randn(4, 3, 16, 16),
                    random_masks(4, 0.5, 0))
    with pytest.raises(ValueError, match=r"name the predictor in modules"):
        produce(Output("latent_predictions", masking="drop", positions="masked"), view)
    with pytest.raises(ValueError, match=r"positions='masked'"):
        produce(Output("latent_predictions", masking="drop", modules=("predictor",)), view)
