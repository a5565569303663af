"""The DINOv2 Vision Transformer backbone ``vit`` (Oquab et al. 2023, section 4; ViT: Dosovitskiy et al. 2021).

Tokens: ``[CLS, registers..., patches...]``. The CLS token and the patches get a learned
position embedding (``pos_embed`` holds the CLS position first, then the patch grid, as in
DINOv2); registers get none. A learnable ``mask_token`` replaces the patch embedding of masked
patches before the position embedding is added (iBOT, Zhou et al. 2022, section 3.2).
Pre-norm blocks with LayerScale and drop-path, final LayerNorm (eps 1e-6).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor, nn

from sslkit.components import Backbone, BackboneOutput, BuildContext
from sslkit.errors import SSLKitError
from sslkit.outputs import Masking
from sslkit.state_loading import LoadResult, load_by_name
from sslkit_plugins.backbones.layer_ids import transformer_layer_id
from sslkit_plugins.backbones.pos_embed import resample_grid
from sslkit_plugins.backbones.vit_blocks import LAYER_NORM_EPS, Block, Mlp, PatchEmbed, SwiGLU, swiglu_hidden_dim
from sslkit_plugins.backbones.vit_checkpoints import (
    convert_weights,
    describe,
    timm_model_kwargs,
    timm_model_name,
    to_timm_state_dict,
)
from sslkit_plugins.backbones.vit_params import VIT_SIZES, ViTParams
from sslkit_plugins.backbones.vit_transformers import to_transformers


class ViT(Backbone):
    """DINOv2 Vision Transformer: ``images [B, C, H, W]`` (+ optional bool ``masks [B, N]``)
    -> normalised CLS ``[B, D]``, patch tokens ``[B, N, D]`` and register tokens ``[B, R, D]``.

    ``H`` and ``W`` must be multiples of ``patch_size``; ``N = (H / p) * (W / p)``.
    """

    supports_masking = True
    supports_token_dropping = True
    supports_patch_tokens = True
    supports_block_outputs = True

    def __init__(self, params: ViTParams, ctx: BuildContext) -> None:
        super().__init__()
        if params.img_size % params.patch_size:
            raise SSLKitError(f"vit: img_size {params.img_size} is not a multiple of patch_size {params.patch_size}")
        self.params = params
        dim, depth, heads = VIT_SIZES[params.size]
        dim, depth, heads = params.embed_dim or dim, params.depth or depth, params.num_heads or heads
        if dim % heads:
            raise SSLKitError(f"vit: embed_dim {dim} is not divisible by num_heads {heads}")
        self.embed_dim = dim
        self.num_heads = heads
        self.patch_size = params.patch_size
        self.num_layers = depth
        self.num_register_tokens = params.num_register_tokens
        side = params.img_size // params.patch_size
        self.grid = (side, side)
        self.ffn_kind = ("swiglu" if params.size == "giant" else "mlp") if params.ffn == "auto" else params.ffn
        self.mlp_hidden = (
            swiglu_hidden_dim(dim, params.mlp_ratio) if self.ffn_kind == "swiglu" else int(dim * params.mlp_ratio)
        )

        self.patch_embed = PatchEmbed(params.patch_size, params.in_chans, dim)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.reg_token = (
            nn.Parameter(torch.zeros(1, params.num_register_tokens, dim)) if params.num_register_tokens else None
        )
        self.pos_embed = nn.Parameter(torch.zeros(1, 1 + side * side, dim))
        self.mask_token = nn.Parameter(torch.zeros(1, dim))
        if params.drop_path_uniform:
            rates = [params.drop_path_rate] * depth
        else:
            rates = torch.linspace(0.0, params.drop_path_rate, depth).tolist()
        ffn = SwiGLU if self.ffn_kind == "swiglu" else Mlp
        self.blocks = nn.ModuleList(
            Block(dim, heads, ffn(dim, self.mlp_hidden), params.qkv_bias, params.layerscale_init, rate,
                  params.attention)
            for rate in rates
        )
        self.norm = nn.LayerNorm(dim, eps=LAYER_NORM_EPS)
        self._init_weights()

    def _init_weights(self) -> None:
        """DINOv2 / timm initialisation: N(0, 0.02) linear weights and position embedding, zero
        biases, N(0, 1e-6) CLS and register tokens, zero mask token; the patch convolution keeps
        PyTorch's default. (DINOv2's ``trunc_normal_(std=0.02)`` truncates at +-2, i.e. 100 standard
        deviations: the same distribution as the plain normal, which is four times faster to draw.)"""
        nn.init.normal_(self.pos_embed, std=0.02)
        nn.init.normal_(self.cls_token, std=1e-6)
        if self.reg_token is not None:
            nn.init.normal_(self.reg_token, std=1e-6)
        nn.init.zeros_(self.mask_token)
        for module in self.blocks.modules():
            if isinstance(module, nn.Linear):
                nn.init.normal_(module.weight, std=0.02)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)

    def position_embedding(self, grid: tuple[int, int]) -> Tensor:
        """``[1, 1 + h * w, D]``: the CLS position, then the patch positions resampled to ``grid``."""
        if grid == self.grid:
            return self.pos_embed
        patches = resample_grid(
            self.pos_embed[:, 1:], self.grid, grid, self.params.pos_embed_antialias, self.params.pos_embed_offset
        )
        return torch.cat([self.pos_embed[:, :1], patches], dim=1)

    def prepare_tokens(self, images: Tensor, masks: Tensor | None = None, masking: Masking = "replace",
                       ) -> tuple[Tensor, tuple[Tensor, Tensor] | None, Tensor | None]:
        """Patch embedding, mask token, position embedding, CLS and register tokens -> ``[B, 1 + R + N, D]``.

        With ``masking="drop"`` the masked patches are removed instead (after the position embedding,
        so every kept patch keeps its position): the sequence is ``[B, 1 + R + L, D]`` with ``L`` the
        largest count of kept patches, shorter rows padded; also returned are the kept patches' grid
        indices ``[B, L]`` with which of them are real (not padding), and the attention mask
        ``[B, 1, 1, 1 + R + L]`` (False for padding), both ``None`` otherwise."""
        b, _, height, width = images.shape
        p = self.params.patch_size
        if height % p or width % p:
            raise SSLKitError(
                f"vit: input {height}x{width} is not a multiple of the patch size {p}; "
                f"use crop sizes that are multiples of {p}"
            )
        x = self.patch_embed(images)
        grid = (x.shape[-2], x.shape[-1])
        x = x.flatten(2).transpose(1, 2)
        if masks is not None:
            if masks.shape != x.shape[:2]:
                raise SSLKitError(
                    f"vit: masks of shape {tuple(masks.shape)} for {b} images of {grid[0]}x{grid[1]} "
                    f"patches; expected ({b}, {grid[0] * grid[1]})"
                )
            if masking == "replace":
                x = torch.where(masks.unsqueeze(-1), self.mask_token.to(x.dtype).unsqueeze(0), x)
        pos = self.position_embedding(grid)
        x = x + pos[:, 1:]
        kept = attn_mask = None
        if masks is not None and masking == "drop":
            x, index, valid = _drop_masked(x, masks)
            kept = (index, valid)
            prefix = torch.ones(b, 1 + self.num_register_tokens, dtype=torch.bool, device=x.device)
            attn_mask = torch.cat([prefix, valid], dim=1)[:, None, None, :]
        tokens = [(self.cls_token + pos[:, :1]).expand(b, -1, -1)]
        if self.reg_token is not None:
            tokens.append(self.reg_token.expand(b, -1, -1))
        tokens.append(x)
        return torch.cat(tokens, dim=1), kept, attn_mask

    def forward(self, images: Tensor, masks: Tensor | None = None, *, masking: Masking = "replace",
                blocks: Sequence[int] = ()) -> BackboneOutput:
        """Normalised CLS, patch and register tokens; ``blocks``: block indices whose patch outputs
        (before the final norm) are returned too. After ``masking="drop"`` patch rows of dropped
        patches are zero."""
        x, kept, attn_mask = self.prepare_tokens(images, masks, masking)
        r = self.num_register_tokens
        p = self.params.patch_size
        n_patches = (images.shape[-2] // p) * (images.shape[-1] // p)
        wanted = set(blocks)
        intermediate: dict[int, Tensor] = {}
        for i, block in enumerate(self.blocks):
            x = block(x, attn_mask)
            if i in wanted:
                intermediate[i] = _scatter_kept(x[:, 1 + r :], kept, n_patches)
        x = self.norm(x)
        return BackboneOutput(cls=x[:, 0], patches=_scatter_kept(x[:, 1 + r :], kept, n_patches),
                              registers=x[:, 1 : 1 + r] if r else None, blocks=intermediate)

    def mask_only_parameters(self) -> list[str]:
        """The mask token: it replaces masked patch embeddings and is unused without masks."""
        return ["mask_token"]

    def layer_id(self, param_name: str) -> int:
        """0 for patch_embed / pos_embed / cls_token / mask_token / reg_token, ``i + 1`` for
        ``blocks.i``, ``num_layers + 1`` for the final norm (layer-wise lr decay: BEiT, Bao et al. 2022, appendix;
        DINOv2's training code)."""
        return transformer_layer_id(param_name, self.num_layers)

    def export_weights(self) -> tuple[dict[str, Tensor], dict[str, str]]:
        """timm ``VisionTransformer`` weights and how to build the model that loads them:
        ``timm.create_model(meta["timm_model"], pretrained=True,
        pretrained_cfg_overlay=dict(file=PATH), img_size=int(meta["img_size"]),
        **json.loads(meta["timm_model_kwargs"]))`` (the kwargs are empty for the DINOv2 sizes).
        Without ``img_size`` timm builds its default 518 px model and resamples the position
        embedding itself while loading."""
        metadata = {
            "format": "timm",
            "timm_model": timm_model_name(self),
            "timm_model_kwargs": json.dumps(timm_model_kwargs(self)),
            "img_size": str(self.params.img_size),
        }
        return to_timm_state_dict(self), metadata

    def export_transformers(self) -> tuple[dict[str, Tensor], dict[str, Any]]:
        """Weights and ``config.json`` of the equivalent Hugging Face ``Dinov2Model`` (with registers:
        ``Dinov2WithRegistersModel``); see :func:`sslkit_plugins.backbones.vit_transformers.to_transformers`."""
        return to_transformers(self)

    def load_external_weights(self, state: dict[str, Tensor], layout: str = "auto") -> LoadResult:
        """Load ``state`` in any layout this backbone knows (sslkit, DINOv2 release, timm, Hugging
        Face; ``auto`` detects it), resampling the position embedding and resizing the patch kernel
        where the source's differ; report what was loaded (``init_from``). A timm source has no
        mask token: this backbone keeps its own (reported missing)."""
        converted, read, reshaped = convert_weights(self, state, layout)
        return load_by_name(self, converted, layout=read, reshaped=reshaped, description=describe(converted))


def _drop_masked(patches: Tensor, masks: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """The unmasked patches of each row moved to the front in grid order ``[B, L, D]`` (``L``: the
    largest count of unmasked patches; shorter rows padded with some of their masked patches, which the
    attention mask hides), their grid indices ``[B, L]`` (distinct within a row) and which entries are
    real ``[B, L]``."""
    counts = (~masks).sum(dim=1)
    length = int(counts.max())
    order = torch.argsort(masks.to(torch.int8), dim=1, stable=True)[:, :length]  # unmasked first, in order
    valid = torch.arange(length, device=masks.device).unsqueeze(0) < counts.unsqueeze(1)
    gathered = torch.gather(patches, 1, order.unsqueeze(-1).expand(-1, -1, patches.shape[-1]))
    return gathered, order, valid


def _scatter_kept(tokens: Tensor, kept: tuple[Tensor, Tensor] | None, n_patches: int) -> Tensor:
    """Tokens of the kept patches back at their grid positions ``[B, N, D]`` (zeros elsewhere)."""
    if kept is None:
        return tokens
    index, valid = kept
    out = tokens.new_zeros(tokens.shape[0], n_patches, tokens.shape[-1])
    real = tokens * valid.unsqueeze(-1).to(tokens.dtype)  # padding rows sit at masked positions: zero them
    return out.scatter(1, index.unsqueeze(-1).expand(-1, -1, tokens.shape[-1]), real)
