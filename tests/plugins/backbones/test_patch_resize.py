"""FlexiViT's PI-resize of a patch kernel: an upsampled patch gives the same token as the original."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from sslkit_plugins.backbones.patch_resize import resize_patch_kernel


def test_upsized_kernel_gives_the_token_of_the_bilinearly_upsampled_patch() -> None:
    g = torch.Generator().manual_seed(0)
    kernel = torch.randn(6, 3, 4, 4, generator=g, dtype=torch.float64)
    patches = torch.randn(5, 3, 4, 4, generator=g, dtype=torch.float64)
    for size in ((8, 8), (6, 6), (4, 7)):
        resized = resize_patch_kernel(kernel, size)
        upsampled = F.interpolate(patches, size=size, mode="bilinear", align_corners=False)
        torch.testing.assert_close(torch.einsum("bchw,dchw->bd", upsampled, resized),
                                   torch.einsum("bchw,dchw->bd", patches, kernel))
    assert resize_patch_kernel(kernel, (4, 4)) is kernel
    assert resize_patch_kernel(kernel.float(), (2, 2)).dtype == torch.float32  # least squares, same dtype
