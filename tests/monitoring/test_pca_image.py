"""Patch PCA images on tokens whose principal components are known by construction."""

from __future__ import annotations

import pytest
import torch

from sslkit.monitoring.pca_image import patch_pca_rgb


def _minmax(x: torch.Tensor) -> torch.Tensor:
    return (x - x.min()) / (x.max() - x.min())


def _patterns(n: int) -> torch.Tensor:
    """Three zero-mean, mutually orthogonal patterns over ``n`` tokens (columns)."""
    torch.manual_seed(0)
    raw = torch.randn(n, 3)
    raw = raw - raw.mean(0)
    q, _ = torch.linalg.qr(raw)
    return q


def test_axis_aligned_components_become_the_channels_in_variance_order() -> None:
    batch, h, w, dim = 2, 3, 4, 6
    patterns = _patterns(batch * h * w)
    tokens = torch.zeros(batch * h * w, dim)
    tokens[:, 1] = 10.0 * patterns[:, 0]  # largest variance -> red
    tokens[:, 4] = 3.0 * patterns[:, 1]  # -> green
    tokens[:, 0] = 1.0 * patterns[:, 2]  # -> blue
    tokens += torch.tensor([5.0, -2.0, 1.0, 0.0, 3.0, 7.0])  # an offset PCA must remove
    image = patch_pca_rgb(tokens.reshape(batch, h * w, dim), (h, w))
    assert image.shape == (batch, 3, h, w) and image.dtype == torch.float32
    for channel in range(3):
        # Loadings are +1 on one axis, so the sign convention keeps the pattern's sign.
        expected = _minmax(patterns[:, channel]).reshape(batch, h, w)
        torch.testing.assert_close(image[:, channel], expected, atol=1e-4, rtol=0)
    # Row-major grid: token (row, col) of image b is patch index row * w + col.
    assert image[1, 0, 2, 3] == pytest.approx(_minmax(patterns[:, 0])[h * w + 2 * w + 3].item(), abs=1e-4)


def test_rotated_components_are_recovered_up_to_sign_and_each_channel_spans_0_to_1() -> None:
    batch, n, dim = 3, 16, 12
    patterns = _patterns(batch * n)
    torch.manual_seed(1)
    rotation, _ = torch.linalg.qr(torch.randn(dim, dim))
    tokens = (patterns * torch.tensor([6.0, 4.0, 2.0])) @ rotation[:3]
    image = patch_pca_rgb(tokens.reshape(batch, n, dim), (4, 4))
    for channel in range(3):
        got = image[:, channel].reshape(-1)
        expected = _minmax(patterns[:, channel])
        assert min((got - expected).abs().max(), (got - (1 - expected)).abs().max()) < 1e-4
        assert got.min() == 0.0 and got.max() == pytest.approx(1.0)
    again = patch_pca_rgb(tokens.reshape(batch, n, dim), (4, 4))
    assert torch.equal(image, again)


def test_missing_components_give_black_channels() -> None:
    patterns = _patterns(8)
    tokens = torch.stack([patterns[:, 0], 0.5 * patterns[:, 1]], dim=1).reshape(2, 4, 2)  # D = 2
    image = patch_pca_rgb(tokens, (2, 2))
    assert torch.equal(image[:, 2], torch.zeros(2, 2, 2))
    assert image[:, :2].amax() == pytest.approx(1.0)
    flat = patch_pca_rgb(torch.ones(1, 4, 5), (2, 2))  # constant tokens: no component at all
    assert torch.equal(flat, torch.zeros(1, 3, 2, 2))


def test_grid_must_match_the_number_of_patches() -> None:
    with pytest.raises(ValueError, match="grid 3x3"):
        patch_pca_rgb(torch.randn(1, 8, 4), (3, 3))
