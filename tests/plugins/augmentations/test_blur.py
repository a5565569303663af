"""The per-crop Gaussian blur equals kornia's, in chunks, and leaves unselected crops alone."""

from __future__ import annotations

import pytest
import torch
from kornia.filters import gaussian_blur2d

import sslkit_plugins.augmentations.blur as blur


@pytest.mark.parametrize("size,kernel", [(40, 9), (12, 3)])
def test_equals_kornia_gaussian_blur_on_the_selected_rows(size: int, kernel: int, monkeypatch) -> None:
    monkeypatch.setattr(blur, "CPU_CHUNK_FLOATS", 3 * size * size * 2)  # chunks of two crops
    x = torch.rand(7, 3, size, size, generator=torch.Generator().manual_seed(0))
    rows, sigma = torch.tensor([0, 2, 3, 6, 5]), torch.tensor([0.1, 0.5, 1.0, 1.7, 2.0])
    expected = x.clone()
    expected[rows] = gaussian_blur2d(x[rows], kernel, sigma[:, None].expand(-1, 2))
    out = blur.gaussian_blur_rows_(x.clone(), rows, sigma, kernel)
    assert torch.allclose(out, expected, atol=1e-6)
    assert torch.equal(out[[1, 4]], x[[1, 4]])
    assert (out[6] - x[6]).abs().mean() > (out[0] - x[0]).abs().mean()  # larger sigma, stronger blur


def test_no_rows_is_a_no_op() -> None:
    x = torch.rand(2, 3, 5, 5)
    assert torch.equal(blur.gaussian_blur_rows_(x.clone(), torch.tensor([], dtype=torch.long), torch.tensor([]), 3), x)
