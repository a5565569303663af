"""Weights of the ``vit`` backbone to and from the DINOv2 release layout and timm's layout (and,
through :mod:`sslkit_plugins.backbones.vit_transformers`, from Hugging Face's), for ``init_from``
and ``sslkit export``. Reading files and run directories is :mod:`sslkit.weights.sources`.

Our parameter names are timm's ``VisionTransformer`` names plus ``mask_token``; ``pos_embed``
always holds the CLS position first (as in DINOv2). The layouts differ in:

- DINOv2 release: ``register_tokens`` (ours: ``reg_token``); SwiGLU ``mlp.w12`` / ``mlp.w3``
  (ours: ``mlp.fc1`` / ``mlp.fc2``); FSDP-chunked checkpoints name block ``i`` of chunk ``c``
  ``blocks.c.i`` (``i`` is the global index).
- timm ``vit_*_reg4_dinov2``: ``no_embed_class``: ``pos_embed`` covers the patches only and the
  CLS position is folded into ``cls_token``; no ``mask_token`` in any timm model.
"""

from __future__ import annotations

import math
import re
from typing import Literal

import torch
from torch import Tensor

from sslkit.errors import SSLKitError
from sslkit_plugins.backbones.patch_resize import resize_patch_kernel
from sslkit_plugins.backbones.pos_embed import resample_grid
from sslkit_plugins.backbones.vit_params import VIT_SIZES
from sslkit_plugins.backbones.vit_protocol import ViTLike
from sslkit_plugins.backbones.vit_transformers import from_transformers, is_transformers_layout

SourceLayout = Literal["auto", "sslkit", "dinov2", "timm", "transformers"]
#: The layouts a source can be read as (``auto`` detects it from the names).
SOURCE_LAYOUTS: tuple[str, ...] = ("auto", "sslkit", "dinov2", "timm", "transformers")

_CHUNKED_BLOCK = re.compile(r"^blocks\.\d+\.(\d+)\.")
_DINOV3_KEYS = ("storage_tokens", "rope_embed.periods")


def detect_format(state: dict[str, Tensor]) -> Literal["dinov2", "timm", "transformers"]:
    """``transformers`` for Hugging Face names, ``dinov2`` when a key only the DINOv2 layout (or
    ours) has is present (``mask_token``, ``register_tokens``, ``mlp.w12``, chunked blocks), else
    ``timm``."""
    if is_transformers_layout(state):
        return "transformers"
    for key in state:
        if key in ("mask_token", "register_tokens") or ".mlp.w12." in key or _CHUNKED_BLOCK.match(key):
            return "dinov2"
    return "timm"


def _from_dinov2_names(key: str) -> str:
    key = _CHUNKED_BLOCK.sub(r"blocks.\1.", key)
    if key == "register_tokens":
        return "reg_token"
    return key.replace(".mlp.w12.", ".mlp.fc1.").replace(".mlp.w3.", ".mlp.fc2.")


def convert_weights(
    vit: ViTLike, state: dict[str, Tensor], layout: str = "auto"
) -> tuple[dict[str, Tensor], str, dict[str, str]]:
    """``state`` (any layout of the module doc, or Hugging Face's) in ``vit``'s names and shapes:
    ``(state, layout read, reshaped)``. A position embedding of another grid is resampled (with the
    backbone's ``pos_embed_antialias`` and ``pos_embed_offset``), a patch kernel of another size is
    PI-resized (:func:`resize_patch_kernel`); ``reshaped`` says which and how. DINOv3 checkpoints
    (rotary position embeddings, which this backbone does not implement) are refused."""
    if layout not in SOURCE_LAYOUTS:
        raise SSLKitError(f"vit init_format {layout!r}: expected one of {', '.join(SOURCE_LAYOUTS)}")
    if any(key in state for key in _DINOV3_KEYS):
        raise SSLKitError(
            "vit init_from: this is a DINOv3 checkpoint (storage tokens, rotary position embeddings); the vit "
            "backbone implements DINOv2's learned absolute position embedding, so DINOv3 weights would not "
            "compute the same function. Start from a DINOv2 checkpoint instead."
        )
    read = detect_format(state) if layout == "auto" else layout
    if read == "transformers":
        state = from_transformers(state)
    elif read in ("dinov2", "sslkit"):
        state = {_from_dinov2_names(k): v for k, v in state.items()}
    state = dict(state)
    reshaped: dict[str, str] = {}
    if vit.params.layerscale_init is None:
        _fold_layerscale(vit, state, reshaped)
    pos = state.get("pos_embed")
    if pos is not None and pos.ndim == 3 and pos.shape[-1] == vit.embed_dim:
        state["pos_embed"], note = _fit_pos_embed(vit, pos)
        if note:
            reshaped["pos_embed"] = note
    kernel = state.get("patch_embed.proj.weight")
    if kernel is not None and kernel.ndim == 4 and kernel.shape[:2] == vit.patch_embed.proj.weight.shape[:2]:
        size = (vit.params.patch_size, vit.params.patch_size)
        if tuple(kernel.shape[-2:]) != size:
            state["patch_embed.proj.weight"] = resize_patch_kernel(kernel, size)
            reshaped["patch_embed.proj.weight"] = (
                f"patch {kernel.shape[-2]}x{kernel.shape[-1]} -> {size[0]}x{size[1]} (FlexiViT PI-resize)"
            )
    return state, read, reshaped


def _fold_layerscale(vit: ViTLike, state: dict[str, Tensor], reshaped: dict[str, str]) -> None:
    """For a backbone without LayerScale: drop the source's all-ones gammas (timm and transformers
    exports of such a backbone write them) and fold any other gamma into the projection before it
    (``gamma * (W x + b) = (gamma W) x + gamma b``, exact), reporting it as reshaped."""
    for i in range(vit.num_layers):
        for branch, target in (("ls1", "attn.proj"), ("ls2", "mlp.fc2")):
            name = f"blocks.{i}.{branch}.gamma"
            gamma = state.get(name)
            if gamma is None or tuple(gamma.shape) != (vit.embed_dim,):
                continue
            del state[name]
            if bool(torch.all(gamma == 1)):
                continue
            for leaf, scale in (("weight", gamma[:, None]), ("bias", gamma)):
                key = f"blocks.{i}.{target}.{leaf}"
                if key in state and state[key].shape[0] == vit.embed_dim:
                    state[key] = state[key] * scale
                    reshaped[key] = f"LayerScale {name} folded in (this backbone has none)"


def _fit_pos_embed(vit: ViTLike, pos: Tensor) -> tuple[Tensor, str]:
    """Any square grid, with or without the CLS position -> ``vit``'s ``[1, 1 + h * w, D]`` and a
    note of what changed ("" when nothing did).

    A ``pos_embed`` without the CLS position (timm ``no_embed_class``, the CLS position is in
    ``cls_token``) gets a zero CLS position.
    """
    n = pos.shape[1]
    notes = []
    if math.isqrt(n) ** 2 == n:
        pos = torch.cat([pos.new_zeros(1, 1, pos.shape[2]), pos], dim=1)
        n += 1
        notes.append("zero CLS position added (timm no_embed_class)")
    side = math.isqrt(n - 1)
    if side * side != n - 1:
        raise SSLKitError(
            f"vit init_from: pos_embed has {n} positions, neither a square grid nor a square grid plus the "
            "CLS position"
        )
    params = vit.params
    if (side, side) != vit.grid:
        notes.append(f"grid {side}x{side} -> {vit.grid[0]}x{vit.grid[1]} (bicubic)")
    patches = resample_grid(pos[:, 1:], (side, side), vit.grid, params.pos_embed_antialias, params.pos_embed_offset)
    return torch.cat([pos[:, :1], patches], dim=1), "; ".join(notes)


def describe(state: dict[str, Tensor]) -> str:
    """What a state dict in our names looks like: width, patch, depth, registers, and the size it matches."""
    weight = state.get("patch_embed.proj.weight")
    if weight is None or weight.ndim != 4:
        return "no patch_embed.proj.weight"
    width = weight.shape[0]
    depth = 1 + max((int(m.group(1)) for k in state if (m := re.match(r"blocks\.(\d+)\.", k))), default=-1)
    text = f"width {width}, patch {weight.shape[-1]}, {depth} blocks"
    if "reg_token" in state:
        text += f", {state['reg_token'].shape[1]} register tokens"
    size = next((name for name, (d, n, _) in VIT_SIZES.items() if (d, n) == (width, depth)), None)
    return text + (f": size '{size}'" if size else "")


# --- export to timm -------------------------------------------------------------------------

#: timm's DINOv2 entry points: size -> (embed_dim, depth, num_heads, feed-forward).
_TIMM_DINOV2 = {
    "small": (384, 12, 6, "mlp"),
    "base": (768, 12, 12, "mlp"),
    "large": (1024, 24, 16, "mlp"),
    "giant": (1536, 40, 24, "swiglu"),
}
_TIMM_REGISTERS = 4
_TIMM_LAYERSCALE = 1e-5
_TIMM_PATCH = 14


def _timm_base(vit: ViTLike) -> str:
    size = vit.params.size
    if size in _TIMM_DINOV2 and _TIMM_DINOV2[size][3] == vit.ffn_kind:
        return size
    return "giant" if vit.ffn_kind == "swiglu" else "small"


def timm_model_name(vit: ViTLike) -> str:
    """The timm entry point whose architecture ``vit`` matches (up to :func:`timm_model_kwargs`),
    e.g. ``vit_small_patch14_dinov2`` or ``vit_base_patch14_reg4_dinov2``."""
    registers = f"_reg{_TIMM_REGISTERS}" if vit.num_register_tokens else ""
    return f"vit_{_timm_base(vit)}_patch{_TIMM_PATCH}{registers}_dinov2"


def _timm_hidden(dim: int, ffn: str) -> int:
    """The feed-forward width timm's DINOv2 entry points build for ``dim`` (SwiGLU: per half)."""
    return int(dim * 2.66667 * 2) // 2 if ffn == "swiglu" else int(dim * 4.0)


def timm_model_kwargs(vit: ViTLike) -> dict[str, int | float | bool | None]:
    """Keyword arguments for ``timm.create_model(timm_model_name(vit), ...)`` that make timm's
    model match ``vit`` where the entry point's defaults differ (empty for the DINOv2 sizes
    with their default options). ``img_size`` is left to the caller."""
    dim, depth, heads, ffn = _TIMM_DINOV2[_timm_base(vit)]
    p = vit.params
    kwargs: dict[str, int | float | bool | None] = {}
    if vit.embed_dim != dim:
        kwargs["embed_dim"] = vit.embed_dim
    if vit.num_layers != depth:
        kwargs["depth"] = vit.num_layers
    if vit.num_heads != heads:
        kwargs["num_heads"] = vit.num_heads
    if vit.mlp_hidden != _timm_hidden(vit.embed_dim, ffn):
        packed = 2 * vit.mlp_hidden if ffn == "swiglu" else vit.mlp_hidden
        kwargs["mlp_ratio"] = (packed + 0.5) / vit.embed_dim  # timm takes int(dim * mlp_ratio)
    if p.patch_size != _TIMM_PATCH:
        kwargs["patch_size"] = p.patch_size
    if p.in_chans != 3:
        kwargs["in_chans"] = p.in_chans
    if vit.num_register_tokens not in (0, _TIMM_REGISTERS):
        kwargs["reg_tokens"] = vit.num_register_tokens
    if not p.qkv_bias:
        kwargs["qkv_bias"] = False
    return kwargs


def to_timm_state_dict(vit: ViTLike) -> dict[str, Tensor]:
    """``vit``'s weights in the layout of ``timm.create_model(timm_model_name(vit), img_size=
    vit.params.img_size, **timm_model_kwargs(vit))``: no ``mask_token``; with registers, the CLS
    position is folded into ``cls_token`` and ``pos_embed`` keeps the patch positions only."""
    state = {k: v.detach().clone() for k, v in vit.state_dict().items() if k != "mask_token"}
    if vit.params.layerscale_init is None:  # timm drops init_values=None: an all-ones gamma is the identity
        for i in range(vit.num_layers):
            for branch in ("ls1", "ls2"):
                state[f"blocks.{i}.{branch}.gamma"] = torch.ones(vit.embed_dim)
    if vit.num_register_tokens:
        pos = state.pop("pos_embed")
        state["cls_token"] = state["cls_token"] + pos[:, :1]
        state["pos_embed"] = pos[:, 1:].clone()
    return state
