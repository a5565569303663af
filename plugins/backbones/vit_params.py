"""Parameters of the ``vit`` backbone and the DINOv2 model sizes (Oquab et al. 2023, table 17 and appendix)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from sslkit.params import param
from sslkit_plugins.backbones.vit_blocks import AttentionKernel

ViTSize = Literal["tiny", "small", "base", "large", "giant"]

#: size -> (embed_dim, depth, num_heads). ViT-g is DINOv2's "giant2" (1536 wide, 40 blocks).
VIT_SIZES: dict[str, tuple[int, int, int]] = {
    "tiny": (192, 12, 3),
    "small": (384, 12, 6),
    "base": (768, 12, 12),
    "large": (1024, 24, 16),
    "giant": (1536, 40, 24),
}


@dataclass
class ViTParams:
    """Parameters of the ``vit`` backbone (the DINOv2 Vision Transformer)."""

    size: ViTSize = param(
        "small",
        "Model size (width/depth/heads): tiny 192/12/3, small 384/12/6 (~22M parameters), base 768/12/12 "
        "(~86M), large 1024/24/16 (~300M), giant 1536/40/24 (~1.1B, SwiGLU).",
    )
    embed_dim: int | None = param(
        None, "Override the size's width (for small CPU-scale models); null keeps the size's value.", ge=8)
    depth: int | None = param(None, "Override the size's number of blocks; null keeps the size's value.", ge=1)
    num_heads: int | None = param(
        None, "Override the size's number of attention heads (must divide the width); null keeps it.", ge=1)
    patch_size: int = param(14, "Side of the square patches in pixels; input sides must be multiples of it.", ge=1)
    img_size: int = param(
        224,
        "Image side the position embedding is created for (grid img_size / patch_size). Other input sizes "
        "that are multiples of patch_size work through bicubic interpolation of the embedding.",
        ge=1,
    )
    in_chans: int = param(3, "Number of input image channels.", ge=1)
    num_register_tokens: int = param(
        0,
        "Number of register tokens (Darcet et al. 2024; DINOv2 releases use 4), placed after the CLS token "
        "without a position embedding.",
        ge=0,
    )
    layerscale_init: float | None = param(
        1e-5, "Initial value of the LayerScale gammas on both residual branches; null disables LayerScale."
    )
    drop_path_rate: float = param(
        0.0,
        "Stochastic-depth rate of the residual branches during training (DINOv2 recipes: 0.3-0.4); "
        "never applied in eval mode (the teacher).",
        ge=0.0,
        lt=1.0,
    )
    drop_path_uniform: bool = param(
        True,
        "Same drop-path rate in every block (DINOv2 default); false ramps it linearly from 0 at the "
        "first block to drop_path_rate at the last.",
    )
    ffn: Literal["auto", "mlp", "swiglu"] = param(
        "auto",
        "Feed-forward type: 'mlp' (GELU), 'swiglu' (hidden width 2/3 of the MLP's, rounded up to a "
        "multiple of 8), or 'auto' (SwiGLU for giant, MLP otherwise, as in DINOv2).",
    )
    mlp_ratio: float = param(4.0, "Feed-forward hidden width as a multiple of the embedding width.", gt=0.0)
    qkv_bias: bool = param(True, "Bias on the fused query/key/value projection.")
    attention: AttentionKernel = param(
        "auto",
        "Attention kernel: 'sdpa' (torch.nn.functional.scaled_dot_product_attention), 'explicit' "
        "(softmax(q k^T / sqrt(d)) v as plain matmuls), or 'auto': SDPA, except on the CPU in bf16/fp16 "
        "for sequences up to 256 tokens, where PyTorch's CPU SDPA kernel is several times slower.",
    )
    pos_embed_antialias: bool = param(
        True,
        "Anti-aliased bicubic kernel when resampling the position embedding to another grid (timm's "
        "kernel, so that exported weights behave the same in timm at every resolution); false uses "
        "the plain bicubic kernel of the DINOv2 code.",
    )
    pos_embed_offset: float = param(
        0.0,
        "Offset of the position-embedding resampling from the stored h0 x w0 grid to an h x w grid: 0 "
        "interpolates to the size (h, w) (timm); an offset > 0 passes the scale factors ((h + offset) / h0, "
        "(w + offset) / w0) instead (same output size, source positions (i + 0.5) * h0 / (h + offset) - 0.5), "
        "as DINO and DINOv2 do with 0.1 (interpolate_offset in dinov2/models/vision_transformer.py). The "
        "native grid always uses the stored embedding as is.",
        ge=0.0,
        lt=1.0,
    )
