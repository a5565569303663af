"""``init_from``: a backbone initialised from each source format, the report, and the error when
too little of the backbone was loaded."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import timm
import torch
from safetensors.torch import save_file
from torch import Tensor, nn

from sslkit.components import BuildContext
from sslkit.errors import SSLKitError
from sslkit.export.hf_folder import write_transformers
from sslkit.export.timm_file import write_timm
from sslkit.registry import create
from sslkit.weights import REPORT_FILE, initialise
from sslkit_plugins.backbones.vit import ViT
from sslkit_plugins.backbones.vit_checkpoints import timm_model_kwargs, timm_model_name
from sslkit_plugins.backbones.vit_params import ViTParams

TINY = {"size": "tiny", "embed_dim": 32, "depth": 2, "num_heads": 2, "patch_size": 4, "img_size": 16}
SOURCE = {"num_register_tokens": 2, "ffn": "swiglu"}  # every name mapping: registers, packed SwiGLU


def tiny(seed: int, **kwargs: object) -> ViT:
    torch.manual_seed(seed)
    vit = ViT(ViTParams(**{**TINY, **kwargs}), BuildContext()).eval()
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():  # random values everywhere (gammas, norms, mask token) so that every tensor matters
        for p in vit.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.1)
    return vit


def outputs(vit: nn.Module, seed: int = 3) -> list[Tensor]:
    images = torch.randn(2, 3, 16, 16, generator=torch.Generator().manual_seed(seed))
    masks = torch.zeros(2, 16, dtype=torch.bool)
    masks[:, ::3] = True
    with torch.no_grad():
        plain, masked = vit(images), vit(images, masks)
    return [t for out in (plain, masked) for t in (out.cls, out.patches, out.registers) if t is not None]


def sslkit_payload(vit: ViT) -> dict:
    head = {"heads.dino.last_layer.weight": torch.zeros(4, 4)}
    return {"format": "sslkit-checkpoint", "format_version": 1, "step": 3,
            "student": {**{f"backbone.{k}": torch.zeros_like(v) for k, v in vit.state_dict().items()}, **head},
            "teacher": {**{f"backbone.{k}": v for k, v in vit.state_dict().items()}, **head}}


def official_dinov2(vit: ViT) -> dict:
    """The DINOv2 release's names (register_tokens, mlp.w12 / w3) inside a training checkpoint."""
    renamed = {k.replace("reg_token", "register_tokens").replace("mlp.fc1", "mlp.w12").replace("mlp.fc2", "mlp.w3"): v
               for k, v in vit.state_dict().items()}
    return {"teacher": {f"backbone.{k}": v for k, v in renamed.items()}, "iteration": 9}


def write_source(kind: str, vit: ViT, tmp_path: Path) -> Path:
    if kind in ("sslkit checkpoint", "sslkit run directory"):
        path = tmp_path / "run" / "checkpoints" / "step_00000003.pt"
        path.parent.mkdir(parents=True)
        torch.save(sslkit_payload(vit), path)
        return path if kind == "sslkit checkpoint" else tmp_path / "run"
    if kind == "sslkit export (timm safetensors)":
        write_timm(vit, tmp_path / "backbone.safetensors", {})
        return tmp_path / "backbone.safetensors"
    if kind == "official DINOv2 .pth":
        torch.save(official_dinov2(vit), tmp_path / "teacher_checkpoint.pth")
        return tmp_path / "teacher_checkpoint.pth"
    if kind == "timm model safetensors":
        model = timm.create_model(timm_model_name(vit), img_size=16, weight_init="skip", **timm_model_kwargs(vit))
        model.load_state_dict(vit.export_weights()[0])
        save_file(model.state_dict(), str(tmp_path / "timm.safetensors"))
        return tmp_path / "timm.safetensors"
    write_transformers(vit, tmp_path / "hf", {})
    return tmp_path / "hf"


KINDS = {  # source -> (report kind, layout, missing): timm layouts have no mask token
    "sslkit checkpoint": ("sslkit", "dinov2", []),
    "sslkit run directory": ("sslkit", "dinov2", []),
    "sslkit export (timm safetensors)": ("file", "timm", ["mask_token"]),
    "official DINOv2 .pth": ("file", "dinov2", []),
    "timm model safetensors": ("file", "timm", ["mask_token"]),
    "transformers folder": ("transformers", "transformers", []),
}


@pytest.mark.parametrize("kind", list(KINDS))
def test_each_source_gives_the_source_backbones_outputs_exactly(kind: str, tmp_path: Path) -> None:
    source = tiny(seed=1, **SOURCE)
    path = write_source(kind, source, tmp_path)
    fresh = tiny(seed=2, **SOURCE)
    report = initialise(fresh, path, min_fraction=0.9, log=None)
    report_kind, layout, missing = KINDS[kind]
    assert (report.kind, report.layout, report.missing, report.unexpected, report.mismatched) == (
        report_kind, layout, missing, [], [])
    assert report.loaded_tensors == report.total_tensors - len(missing)
    if missing:  # a timm source: our own mask token stays; compare the unmasked forward only
        fresh.mask_token.data.copy_(source.mask_token.data)
    for got, want in zip(outputs(fresh), outputs(source), strict=True):
        torch.testing.assert_close(got, want, rtol=0, atol=0)


def test_report_is_printed_and_saved_with_counts_by_tensor_and_element(tmp_path: Path) -> None:
    source = tiny(seed=1)
    write_timm(source, tmp_path / "b.safetensors", {})
    printed: list[str] = []
    report = initialise(tiny(seed=2), tmp_path / "b.safetensors", log=printed.append)
    assert report.total_tensors == 35 and report.loaded_tensors == 34 and report.missing == ["mask_token"]
    assert report.total_elements - report.loaded_elements == 32  # the mask token's 32 values
    assert "loaded 34/35 tensors (97.1%)" in printed[0] and "missing (1): mask_token" in printed[0]
    report.save(tmp_path / REPORT_FILE)
    saved = json.loads((tmp_path / REPORT_FILE).read_text())
    assert saved["missing"] == ["mask_token"] and saved["tensor_fraction"] == pytest.approx(34 / 35)
    assert saved["layout"] == "timm" and saved["kind"] == "file" and len(saved["loaded"]) == 34


def test_a_checkpoint_matching_two_tensors_is_an_error(tmp_path: Path) -> None:
    state = tiny(seed=1).state_dict()
    torch.save({"cls_token": state["cls_token"], "pos_embed": state["pos_embed"], "fc.weight": torch.zeros(3)},
               tmp_path / "partial.pth")
    with pytest.raises(SSLKitError, match=r"only 5\.7% of the backbone's tensors[\s\S]*too few by tensors and by "
                       r"elements[\s\S]*loaded 2/35 tensors[\s\S]*unexpected \(1\): fc\.weight"):
        initialise(tiny(seed=2), tmp_path / "partial.pth", log=None)
    report = initialise(tiny(seed=2), tmp_path / "partial.pth", min_fraction=0.0, log=None)  # on purpose
    assert report.loaded == ["cls_token", "pos_embed"]


def test_most_tensors_but_too_few_elements_is_an_error_by_elements(tmp_path: Path) -> None:
    state = {k: v for k, v in tiny(seed=1).state_dict().items() if not k.endswith("mlp.fc1.weight")}
    save_file(state, str(tmp_path / "no_fc1.safetensors"))
    with pytest.raises(SSLKitError, match=r"too few by elements\)"):
        initialise(tiny(seed=2), tmp_path / "no_fc1.safetensors", log=None)


def test_other_grid_and_patch_size_are_reshaped_and_reported(tmp_path: Path) -> None:
    source = tiny(seed=1, patch_size=8, img_size=48)  # 6 x 6 grid of 8 px patches
    save_file(source.state_dict(), str(tmp_path / "big.safetensors"))
    target = tiny(seed=2)  # 4 x 4 grid of 4 px patches
    report = initialise(target, tmp_path / "big.safetensors", min_fraction=1.0, log=None)
    assert report.reshaped == {"pos_embed": "grid 6x6 -> 4x4 (bicubic)",
                               "patch_embed.proj.weight": "patch 8x8 -> 4x4 (FlexiViT PI-resize)"}
    assert target.pos_embed.shape == (1, 17, 32) and target.patch_embed.proj.weight.shape == (32, 3, 4, 4)
    torch.testing.assert_close(target.blocks[1].mlp.fc2.weight, source.blocks[1].mlp.fc2.weight)


def test_dinov3_checkpoints_and_unknown_layouts_are_refused(tmp_path: Path) -> None:
    state = dict(tiny(seed=1).state_dict())
    state["storage_tokens"] = state.pop("cls_token")
    torch.save(state, tmp_path / "dinov3.pth")
    with pytest.raises(SSLKitError, match="DINOv3 checkpoint"):
        initialise(tiny(seed=2), tmp_path / "dinov3.pth", log=None)
    with pytest.raises(SSLKitError, match="init_format 'hf': expected one of auto, sslkit, dinov2, timm"):
        initialise(tiny(seed=2), tmp_path / "dinov3.pth", layout="hf", log=None)


def test_other_backbones_load_their_own_names(tmp_path: Path) -> None:
    source = create("backbone", "timm", model_name="test_resnet")
    save_file({k: v.contiguous() for k, v in source.state_dict().items()}, str(tmp_path / "resnet.safetensors"))
    fresh = create("backbone", "timm", model_name="test_resnet")
    report = initialise(fresh, tmp_path / "resnet.safetensors", min_fraction=1.0, log=None)
    assert report.layout == "by name" and report.loaded_tensors == report.total_tensors
    for key, value in source.state_dict().items():
        assert torch.equal(fresh.state_dict()[key], value), key
    with pytest.raises(SSLKitError, match="reads only its own names"):
        initialise(fresh, tmp_path / "resnet.safetensors", layout="timm", log=None)


def test_layerscale_is_folded_into_a_backbone_without_it(tmp_path: Path) -> None:
    source = tiny(seed=1)  # random gammas
    save_file(source.state_dict(), str(tmp_path / "ls.safetensors"))
    target = tiny(seed=2, layerscale_init=None)
    report = initialise(target, tmp_path / "ls.safetensors", min_fraction=1.0, log=None)
    assert report.unexpected == [] and len(report.reshaped) == 8  # proj / fc2 weight and bias of 2 blocks
    want = "LayerScale blocks.1.ls2.gamma folded in (this backbone has none)"
    assert report.reshaped["blocks.1.mlp.fc2.bias"] == want
    for got, expected in zip(outputs(target), outputs(source), strict=True):
        torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-6)
