"""The student-only predictor and its packed context: predictions exactly at the masked positions, in
``masks.nonzero()`` order, from the context of their own crop; drop vs replace passes."""

from __future__ import annotations

import pytest
import torch
from conftest import EMBED, N, PassView, predictor, produce, random_masks, tiny_vit
from sslkit_latent_mim.context import pack_context, unpack_context
from sslkit_latent_mim.predictor import sincos_2d

from sslkit.outputs import Output


def test_context_packs_and_unpacks_the_mask_channel() -> None:
    patches, masks = torch.randn(3, N, EMBED), random_masks(3, 0.5, 0)
    packed = pack_context(patches, masks)
    assert packed.shape == (3, N, EMBED + 1)
    back, back_masks = unpack_context(packed)
    assert torch.equal(back, patches) and torch.equal(back_masks, masks)


def test_one_prediction_per_masked_position_in_nonzero_order_from_its_own_crop() -> None:
    """Batched predictions equal the per-crop predictions concatenated in crop order (masks.nonzero()
    is crop-major, then position order), and depend on the visible tokens of their crop only."""
    head = predictor(0, depth=2).eval()
    patches, masks = torch.randn(4, N, EMBED), random_masks(4, 0.6, 1)
    patches[masks] = 0.0  # as after a 'drop' pass
    with torch.no_grad():
        batched = head(pack_context(patches, masks))
        per_crop = torch.cat([head(pack_context(patches[i : i + 1], masks[i : i + 1])) for i in range(4)])
        assert batched.shape == (int(masks.sum()), EMBED)
        torch.testing.assert_close(batched, per_crop, rtol=1e-5, atol=1e-5)
        changed = patches.clone()
        visible = (~masks[1]).nonzero()[0, 0]
        changed[1, visible] += 1.0  # a visible token of crop 1
        moved = head(pack_context(changed, masks))
    rows_of = torch.repeat_interleave(torch.arange(4), masks.sum(dim=1))
    differs = (moved - batched).abs().amax(dim=1) > 1e-6
    assert differs[rows_of == 1].all(), "the predictions of crop 1 must see its visible tokens (context)"
    assert not differs[rows_of != 1].any(), "other crops' predictions must not change"


def test_the_per_token_predictor_maps_each_masked_row_on_its_own() -> None:
    """depth 0 (for 'replace' passes): prediction i is the MLP of the i-th masked row in nonzero order."""
    head = predictor(0, depth=0).eval()
    patches, masks = torch.randn(3, N, EMBED), random_masks(3, 0.5, 2)
    with torch.no_grad():
        got = head(pack_context(patches, masks))
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
def test_context_of_the_vit_pass_with_drop_or_replace(masking: str) -> None:
    backbone, head = tiny_vit(0), predictor(1)
    images, masks = torch.randn(4, 3, 16, 16), random_masks(4, 0.6, 3)
    view = PassView("student", {"backbone": backbone, "predictor": head}, images, masks)
    context = produce(Output("latent_context", masking=masking), view)
    patches, flags = unpack_context(context)
    assert torch.equal(flags, masks)
    dropped_rows_zero = bool((patches[masks] == 0).all())
    assert dropped_rows_zero == (masking == "drop"), "drop zeroes the masked rows, replace encodes the mask token"
    predictions = produce(Output("latent_context", masking=masking, heads=("predictor",)), view)
    assert predictions.shape == (int(masks.sum()), EMBED)


def test_wrong_input_is_a_clear_error() -> None:
    head = predictor(0)
    with pytest.raises(ValueError, match=r"packed context \[C, N, 33\] of the 'latent_context' output"):
        head(torch.randn(5, EMBED))
