"""The teacher targets: data2vec's y = LN(mean of the normalised top-K block outputs), against a direct
computation, through the registered ``latent_targets`` producer on real backbones."""

from __future__ import annotations

import pytest
import torch
from conftest import EMBED, PATCH, PassView, produce, random_masks, tiny_vit
from sslkit_latent_mim.targets import latent_targets

from sslkit.outputs import Output
from sslkit.testing import TinyPatchBackbone


def direct_targets(blocks: list[torch.Tensor], block_norm: str, target_norm: str) -> torch.Tensor:
    """The formula written out: instance norm over positions / layer norm over channels, biased variance."""
    def norm(x: torch.Tensor, dim: int, eps: float) -> torch.Tensor:
        mean = x.mean(dim=dim, keepdim=True)
        var = x.var(dim=dim, unbiased=False, keepdim=True)
        return (x - mean) / torch.sqrt(var + eps)

    normed = []
    for b in blocks:
        normed.append({"instance": norm(b, 1, 1e-5), "layer": norm(b, 2, 1e-6), "none": b}[block_norm])
    y = sum(normed) / len(normed)
    return norm(y, 2, 1e-6) if target_norm == "layer" else y


@pytest.mark.parametrize("block_norm", ["instance", "layer", "none"])
@pytest.mark.parametrize("target_norm", ["layer", "none"])
def test_formula_matches_a_direct_computation(block_norm: str, target_norm: str) -> None:
    torch.manual_seed(0)
    blocks = [torch.randn(3, 16, 8) * (i + 1) + i for i in range(3)]
    expected = direct_targets(blocks, block_norm, target_norm)
    torch.testing.assert_close(latent_targets(blocks, block_norm, target_norm), expected, rtol=1e-5, atol=1e-5)


def test_producer_on_the_tiny_backbone_equals_its_block_computed_by_hand() -> None:
    torch.manual_seed(0)
    backbone = TinyPatchBackbone(embed_dim=EMBED, patch_size=PATCH, grid=4)
    images = torch.randn(4, 3, 16, 16)
    view = PassView("teacher", {"backbone": backbone}, images, random_masks(4, 0.5, 0), blocks=(0,))
    request = Output("latent_targets", model="teacher", masking="none", blocks=(0,))
    with torch.no_grad():
        got = produce(request, view)
        patches = backbone.patch_embed(images).flatten(2).transpose(1, 2)
        tokens = torch.cat([backbone.cls_token.expand(4, -1, -1), patches], dim=1) + backbone.pos_embed
        block_out = (tokens + backbone.block(tokens))[:, 1:]
    torch.testing.assert_close(got, direct_targets([block_out], "instance", "layer"), rtol=1e-4, atol=1e-4)


def test_producer_averages_the_last_k_blocks_of_the_vit() -> None:
    backbone = tiny_vit(0, depth=3).eval()
    images = torch.randn(4, 3, 16, 16)
    view = PassView("teacher", {"backbone": backbone}, images, random_masks(4, 0.5, 0), blocks=(0, 1, 2))
    request = Output("latent_targets", model="teacher", masking="none", blocks=(-2, -1),
                     options=(("block_norm", "layer"),))
    with torch.no_grad():
        got = produce(request, view)
        reference = backbone(images, blocks=(1, 2)).blocks
    torch.testing.assert_close(got, direct_targets([reference[1], reference[2]], "layer", "layer"))


@pytest.mark.parametrize("positions", ["masked", "visible"])
def test_masked_or_visible_positions_select_rows_after_normalising_the_whole_crop(positions: str) -> None:
    """Instance norm is over all positions of a crop: selecting first would change the targets."""
    backbone, masks = tiny_vit(0, depth=3).eval(), random_masks(4, 0.5, 1)
    images = torch.randn(4, 3, 16, 16)
    view = PassView("teacher", {"backbone": backbone}, images, masks, blocks=(1, 2))
    with torch.no_grad():
        every = produce(Output("latent_targets", model="teacher", masking="none", blocks=(1, 2)), view)
        got = produce(Output("latent_targets", model="teacher", masking="none", blocks=(1, 2),
                             positions=positions), view)  # type: ignore[arg-type]
    torch.testing.assert_close(got, every[masks if positions == "masked" else ~masks])


def test_missing_blocks_in_the_pass_are_a_clear_error() -> None:
    view = PassView("teacher", {"backbone": tiny_vit(0)}, torch.randn(4, 3, 16, 16), random_masks(4, 0.5, 0))
    request = Output("latent_targets", model="teacher", masking="none", blocks=(-2, -1))
    with pytest.raises(ValueError, match=r"the backbone pass holds blocks \[\], not \[0, 1\]"):
        produce(request, view)
    with pytest.raises(ValueError, match=r"name the averaged blocks"):
        produce(Output("latent_targets", model="teacher", masking="none"), view)
