"""Position-embedding resampling with DINO / DINOv2's ``interpolate_offset`` (``pos_embed_offset``)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor

from sslkit.components import BuildContext
from sslkit.errors import SSLKitError
from sslkit_plugins.backbones.pos_embed import resample_grid
from sslkit_plugins.backbones.vit import ViT
from sslkit_plugins.backbones.vit_params import ViTParams

GRIDS = ((2, 2), (6, 6), (3, 5), (7, 2))  # from the stored 4 x 4 grid (img_size 56, patch 14)


def make(**kwargs: object) -> ViT:
    torch.manual_seed(0)
    return ViT(ViTParams(**{"size": "tiny", "img_size": 56, **kwargs}), BuildContext()).eval()


def interpolated(vit: ViT, **kwargs: object) -> Tensor:
    """The stored 4 x 4 patch positions through plain bicubic ``F.interpolate(**kwargs)``, CLS first."""
    patches = vit.pos_embed[:, 1:].reshape(1, 4, 4, -1).permute(0, 3, 1, 2)
    patches = F.interpolate(patches, mode="bicubic", antialias=False, **kwargs)
    return torch.cat([vit.pos_embed[:, :1], patches.flatten(2).transpose(1, 2)], dim=1)


@pytest.mark.parametrize("grid", GRIDS)
def test_offset_passes_scale_factors_as_the_official_code(grid: tuple[int, int]) -> None:
    vit = make(pos_embed_antialias=False, pos_embed_offset=0.1)
    got = vit.position_embedding(grid)
    want = interpolated(vit, scale_factor=((grid[0] + 0.1) / 4, (grid[1] + 0.1) / 4))
    assert got.shape == (1, 1 + grid[0] * grid[1], 192)
    torch.testing.assert_close(got, want)
    # the offset moves the sampling positions: not the size-based resampling
    assert not torch.allclose(got, interpolated(vit, size=grid))


def test_offset_keeps_the_stored_embedding_at_the_native_grid() -> None:
    vit = make(pos_embed_antialias=False, pos_embed_offset=0.1)
    assert vit.position_embedding((4, 4)) is vit.pos_embed
    patches = vit.pos_embed[:, 1:]
    assert resample_grid(patches, (4, 4), (4, 4), antialias=False, offset=0.1) is patches


@pytest.mark.parametrize("antialias", [True, False])
def test_zero_offset_resamples_to_the_size(antialias: bool) -> None:
    vit = make(pos_embed_antialias=antialias)
    assert vit.params.pos_embed_offset == 0.0
    for grid in GRIDS:
        patches = vit.pos_embed[:, 1:].reshape(1, 4, 4, -1).permute(0, 3, 1, 2)
        patches = F.interpolate(patches, size=grid, mode="bicubic", antialias=antialias)
        want = torch.cat([vit.pos_embed[:, :1], patches.flatten(2).transpose(1, 2)], dim=1)
        torch.testing.assert_close(vit.position_embedding(grid), want)


def test_loading_weights_for_another_grid_resamples_with_the_offset() -> None:
    """A 4 x 4 checkpoint loaded into a 6 x 6 model holds what the 4 x 4 model uses at 6 x 6, as the
    official model (which keeps its stored grid and resamples in the forward pass) computes."""
    small = make(pos_embed_antialias=False, pos_embed_offset=0.1)
    large = make(img_size=84, pos_embed_antialias=False, pos_embed_offset=0.1)
    assert large.load_external_weights(small.state_dict()).reshaped == {"pos_embed": "grid 4x4 -> 6x6 (bicubic)"}
    torch.testing.assert_close(large.pos_embed, small.position_embedding((6, 6)))


def test_an_offset_that_changes_the_output_size_is_refused() -> None:
    # (15 + 1e-16) / 11 * 11 rounds below 15 in float64: the interpolation would give 14 x 14
    with pytest.raises(SSLKitError, match=r"offset 1e-16 resamples the 11x11 grid to 14x14 instead of 15x15"):
        resample_grid(torch.zeros(1, 121, 8), (11, 11), (15, 15), antialias=False, offset=1e-16)
