"""Built-in backbones: the DINOv2 Vision Transformer and any timm model."""

import sslkit
from sslkit.hookspecs import Register
from sslkit_plugins.backbones.timm_backbone import TimmBackbone, TimmBackboneParams
from sslkit_plugins.backbones.vit import ViT
from sslkit_plugins.backbones.vit_params import ViTParams


@sslkit.hookimpl
def register_backbones(register: Register) -> None:
    register(
        "vit",
        ViT,
        ViTParams,
        summary="DINOv2 Vision Transformer (tiny to giant, registers, mask token, timm/DINOv2 weights).",
    )
    register(
        "timm",
        TimmBackbone,
        TimmBackboneParams,
        summary="Any timm model by name: ViTs with patch tokens and masking, others CLS-only.",
    )
