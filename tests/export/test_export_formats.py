"""``sslkit export`` formats: a Hugging Face ``transformers`` folder that ``Dinov2Model`` / ``AutoModel``
load with sslkit's outputs, a torch.export program, and the read-back check of every writer."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from sslkit.components import BuildContext
from sslkit.errors import SSLKitError
from sslkit.export import export_backbone
from sslkit.export.verify import check_written
from sslkit.registry import create
from sslkit_plugins.backbones.vit import ViT
from sslkit_plugins.backbones.vit_params import ViTParams

TINY = {"size": "tiny", "embed_dim": 32, "depth": 2, "num_heads": 2, "patch_size": 4, "img_size": 16}


def tiny(**kwargs: object) -> ViT:
    vit = ViT(ViTParams(**{**TINY, **kwargs}), BuildContext()).eval()
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():  # random values everywhere so that every tensor matters
        for p in vit.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.1)
    return vit


VARIANTS = {
    "layerscale, mlp": {},
    "no layerscale": {"layerscale_init": None},
    "swiglu": {"ffn": "swiglu"},
    "registers, no qkv bias": {"num_register_tokens": 2, "qkv_bias": False},
}


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_transformers_folder_gives_sslkit_outputs(variant: str, tmp_path: Path, monkeypatch) -> None:
    transformers = pytest.importorskip("transformers")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # the folder is local: nothing may be downloaded
    vit = tiny(**VARIANTS[variant])
    summary = export_backbone(vit, "transformers", tmp_path / "hf", {"sslkit_step": "3"}, image_size=16)
    registers = vit.num_register_tokens
    assert summary["architecture"] == ("Dinov2WithRegistersModel" if registers else "Dinov2Model")
    cls = transformers.Dinov2WithRegistersModel if registers else transformers.Dinov2Model
    images = torch.randn(2, 3, 16, 16, generator=torch.Generator().manual_seed(2))
    masks = torch.zeros(2, 16, dtype=torch.bool)
    masks[0, ::3] = True
    with torch.no_grad():
        ours, ours_masked = vit(images), vit(images, masks)
        for model in (cls.from_pretrained(tmp_path / "hf"), transformers.AutoModel.from_pretrained(tmp_path / "hf")):
            assert type(model) is cls
            out = model.eval()(pixel_values=images)
            torch.testing.assert_close(out.pooler_output, ours.cls, rtol=1e-5, atol=1e-5)
            torch.testing.assert_close(out.last_hidden_state[:, 0], ours.cls, rtol=1e-5, atol=1e-5)
            torch.testing.assert_close(out.last_hidden_state[:, 1 + registers :], ours.patches, rtol=1e-5, atol=1e-5)
            if registers:
                torch.testing.assert_close(out.last_hidden_state[:, 1 : 1 + registers], ours.registers, rtol=1e-5,
                                           atol=1e-5)
            masked = model(pixel_values=images, bool_masked_pos=masks).last_hidden_state
            torch.testing.assert_close(masked[:, 1 + registers :], ours_masked.patches, rtol=1e-5, atol=1e-5)


def test_transformers_export_refuses_backbones_it_cannot_map(tmp_path: Path) -> None:
    resnet = create("backbone", "timm", model_name="test_resnet")
    with pytest.raises(SSLKitError, match="has no Hugging Face transformers layout; only the vit backbone"):
        export_backbone(resnet, "transformers", tmp_path / "hf", {}, image_size=32)
    with pytest.raises(SSLKitError, match="transformers builds a feed-forward of width 24 "):
        export_backbone(tiny(mlp_ratio=1.18, ffn="swiglu"), "transformers", tmp_path / "hf", {}, image_size=16)


def test_torchscript_program_runs_without_sslkit_with_equal_outputs(tmp_path: Path) -> None:
    vit = tiny(num_register_tokens=1)
    summary = export_backbone(vit, "torchscript", tmp_path / "backbone.pt2", {}, image_size=16)
    assert summary["tensors"] == len(vit.state_dict())
    program = torch.export.load(str(tmp_path / "backbone.pt2")).module()
    for batch in (1, 3):  # the batch size is dynamic
        images = torch.randn(batch, 3, 16, 16)
        with torch.no_grad():
            cls, patches = program(images)
            ours = vit(images)
        torch.testing.assert_close(cls, ours.cls, rtol=1e-6, atol=1e-6)
        torch.testing.assert_close(patches, ours.patches, rtol=1e-6, atol=1e-6)


def test_read_back_check_names_what_differs() -> None:
    written = {"a": torch.ones(2), "b": torch.zeros(3), "c": torch.ones(1)}
    check_written(written, {k: v.clone() for k, v in written.items()}, "out.safetensors")
    read = {"a": torch.tensor([1.0, 2.0]), "b": torch.zeros(3, dtype=torch.float64), "d": torch.ones(1)}
    with pytest.raises(SSLKitError, match=r"reading out\.safetensors back[\s\S]*missing \(1\): c[\s\S]*not written by "
                       r"sslkit \(1\): d[\s\S]*different \(2\): a \(values\), b \(3,\) torch\.float64"):
        check_written(written, read, "out.safetensors")
