"""Feature extraction with a tiny real backbone: values, modes, patch mean, progress, bf16."""

from __future__ import annotations

import pytest
import torch
from torch import Tensor, nn

from sslkit.components import Backbone, BackboneOutput
from sslkit.eval.features import extract_features


class TinyBackbone(Backbone):
    """4x4 patches -> linear embedding -> batch norm and dropout -> CLS = mean of the patches."""

    embed_dim = 6
    patch_size = 4
    supports_patch_tokens = True

    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Conv2d(3, self.embed_dim, kernel_size=4, stride=4)
        self.norm = nn.BatchNorm1d(self.embed_dim)
        self.dropout = nn.Dropout(0.5)
        self.cls_proj = nn.Linear(self.embed_dim, self.embed_dim)

    def forward(self, images: Tensor, masks: Tensor | None = None) -> BackboneOutput:
        patches = self.embed(images).flatten(2).transpose(1, 2)  # [B, N, D]
        patches = self.dropout(self.norm(patches.transpose(1, 2)).transpose(1, 2))
        return BackboneOutput(cls=self.cls_proj(patches.mean(dim=1)), patches=patches)


def _loader() -> list[tuple[Tensor, Tensor]]:
    g = torch.Generator().manual_seed(0)
    return [(torch.randn(5, 3, 8, 8, generator=g), torch.tensor([0, 1, 2, 3, 4]) + 5 * i) for i in range(2)] + [
        (torch.randn(3, 3, 8, 8, generator=g), torch.tensor([10, 11, 12]))
    ]


def test_features_are_the_eval_mode_cls_tokens_and_modes_are_restored() -> None:
    torch.manual_seed(0)
    backbone = TinyBackbone()
    backbone.train()
    backbone.cls_proj.eval()  # a submodule in its own mode must keep it
    running_mean = backbone.norm.running_mean.clone()
    loader = _loader()

    features, labels = extract_features(backbone, loader, device="cpu")

    assert features.shape == (13, 6) and features.dtype == torch.float32 and features.device.type == "cpu"
    assert torch.equal(labels, torch.arange(13))
    assert backbone.training and backbone.norm.training and not backbone.cls_proj.training
    assert torch.equal(backbone.norm.running_mean, running_mean)  # batch norm ran in eval mode
    backbone.eval()
    with torch.no_grad():
        expected = torch.cat([backbone(images).cls for images, _ in loader])
    torch.testing.assert_close(features, expected)
    features.add_(1.0)  # an ordinary tensor, not an inference tensor


def test_patch_mean_is_concatenated_after_the_cls_token() -> None:
    torch.manual_seed(1)
    backbone = TinyBackbone().eval()
    loader = _loader()
    features, _ = extract_features(backbone, loader, with_patch_mean=True)
    with torch.no_grad():
        outs = [backbone(images) for images, _ in loader]
    expected = torch.cat([torch.cat([o.cls, o.patches.mean(1)], dim=1) for o in outs])
    assert features.shape == (13, 12)
    torch.testing.assert_close(features, expected)


def test_progress_is_called_after_every_batch_with_its_size() -> None:
    calls: list[tuple[int, int]] = []
    extract_features(TinyBackbone(), _loader(), progress=lambda step, images: calls.append((step, images)))
    assert calls == [(1, 5), (2, 5), (3, 3)]


def test_bf16_autocast_is_close_to_fp32() -> None:
    torch.manual_seed(2)
    backbone = TinyBackbone()
    fp32, _ = extract_features(backbone, _loader())
    bf16, _ = extract_features(backbone, _loader(), precision="bf16")
    assert bf16.dtype == torch.float32
    assert not torch.equal(bf16, fp32)  # the forward really ran in bfloat16
    torch.testing.assert_close(bf16, fp32, atol=0.05, rtol=0.05)


def test_patch_mean_needs_patch_tokens() -> None:
    class ClsOnly(TinyBackbone):
        def forward(self, images: Tensor, masks: Tensor | None = None) -> BackboneOutput:
            return BackboneOutput(cls=super().forward(images).cls)

    backbone = ClsOnly().train()
    with pytest.raises(ValueError, match="patch tokens"):
        extract_features(backbone, _loader(), with_patch_mean=True)
    assert backbone.training  # restored on error too
