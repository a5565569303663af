"""Weights of the ``vit`` backbone to and from the DINOv2 release layout and timm's layout.

Our parameter names are timm's ``VisionTransformer`` names plus ``mask_token``; ``pos_embed``
always holds the CLS position first (as in DINOv2). The layouts differ in:

- DINOv2 release: ``register_tokens`` (ours: ``reg_token``); SwiGLU ``mlp.w12`` / ``mlp.w3``
  (ours: ``mlp.fc1`` / ``mlp.fc2``); FSDP-chunked checkpoints name block ``i`` of chunk ``c``
  ``blocks.c.i`` (``i`` is the global index); training checkpoints nest the backbone under
  ``teacher`` / ``model`` and prefix it with ``backbone.`` or ``teacher.backbone.``.
- timm ``vit_*_reg4_dinov2``: ``no_embed_class``: ``pos_embed`` covers the patches only and the
  CLS position is folded into ``cls_token``; no ``mask_token`` in any timm model.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import torch
from torch import Tensor

from sslkit.errors import SSLKitError
from sslkit_plugins.backbones.pos_embed import resample_grid
from sslkit_plugins.backbones.vit_params import VIT_SIZES

if TYPE_CHECKING:
    from sslkit_plugins.backbones.vit import ViT

CheckpointFormat = Literal["auto", "dinov2", "timm"]

#: Container keys tried, in order, when a checkpoint's top level holds no tensors.
_CONTAINERS = ("teacher", "model", "state_dict", "student")
_CHUNKED_BLOCK = re.compile(r"^blocks\.\d+\.(\d+)\.")
_WRAPPER_PREFIX = re.compile(r"^(?:module\.|_orig_mod\.)+")
_SHOWN = 8


def read_checkpoint(path: str | Path) -> dict[str, Tensor]:
    """The backbone tensors of a local ``.safetensors`` / ``.pth`` file, unwrapped from training
    containers (``teacher``, ``model``, ``state_dict``) and stripped of ``backbone.`` prefixes
    (the teacher's when both are present) and ``module.`` / ``_orig_mod.`` wrappers."""
    file = Path(path).expanduser()
    if not file.is_file():
        raise SSLKitError(f"vit init_from: checkpoint {file} does not exist")
    try:
        if file.suffix == ".safetensors":
            from safetensors.torch import load_file

            obj: object = load_file(str(file))
        else:
            obj = torch.load(file, map_location="cpu", weights_only=True)
    except Exception as exc:  # any reader failure is a bad user file
        raise SSLKitError(f"vit init_from: cannot read {file}: {exc}") from exc
    while isinstance(obj, dict) and not any(isinstance(v, Tensor) for v in obj.values()):
        key = next((k for k in _CONTAINERS if k in obj), None)
        if key is None:
            raise SSLKitError(
                f"vit init_from: {file} holds no tensors at its top level nor under any of "
                f"{', '.join(_CONTAINERS)}; top-level keys: {_listing(obj)}"
            )
        obj = obj[key]
    if not isinstance(obj, dict):
        raise SSLKitError(f"vit init_from: {file} does not hold a state dict (found {type(obj).__name__})")
    state = {str(k): v for k, v in obj.items() if isinstance(v, Tensor)}
    prefixes = sorted({k[: k.index("backbone.") + len("backbone.")] for k in state if "backbone." in k})
    if prefixes:
        prefix = next((p for p in prefixes if "teacher" in p), prefixes[0])
        state = {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}
    return {_WRAPPER_PREFIX.sub("", k): v for k, v in state.items()}


def detect_format(state: dict[str, Tensor]) -> Literal["dinov2", "timm"]:
    """``dinov2`` when a key only the DINOv2 layout has is present (``mask_token``,
    ``register_tokens``, ``mlp.w12``, chunked blocks), else ``timm``."""
    for key in state:
        if key in ("mask_token", "register_tokens") or ".mlp.w12." in key or _CHUNKED_BLOCK.match(key):
            return "dinov2"
    return "timm"


def _from_dinov2_names(key: str) -> str:
    key = _CHUNKED_BLOCK.sub(r"blocks.\1.", key)
    if key == "register_tokens":
        return "reg_token"
    return key.replace(".mlp.w12.", ".mlp.fc1.").replace(".mlp.w3.", ".mlp.fc2.")


def load_weights(
    vit: ViT, state: dict[str, Tensor], fmt: CheckpointFormat = "auto", source: str = "state dict"
) -> None:
    """Copy ``state`` (DINOv2 or timm layout, see the module doc) into ``vit``.

    The position embedding is resampled to ``vit``'s grid when the checkpoint's differs; a
    timm checkpoint keeps ``vit``'s own ``mask_token``. Missing or unexpected keys and shape
    mismatches raise :class:`SSLKitError` naming ``source`` and the keys.
    """
    layout = detect_format(state) if fmt == "auto" else fmt
    if layout == "dinov2":
        state = {_from_dinov2_names(k): v for k, v in state.items()}
    state = dict(state)
    own = vit.state_dict()
    if layout == "timm" and "mask_token" not in state:
        state["mask_token"] = own["mask_token"]
    if "pos_embed" in state and state["pos_embed"].ndim == 3:
        state["pos_embed"] = _fit_pos_embed(vit, state["pos_embed"], source)
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    mismatched = [
        f"{k} {tuple(state[k].shape)} (model {tuple(own[k].shape)})"
        for k in own
        if k in state and state[k].shape != own[k].shape
    ]
    if missing or unexpected or mismatched:
        p = vit.params
        lines = [
            f"vit init_from: {source} ({layout} layout; {_describe(state)}) does not fit the backbone "
            f"(size={p.size}, patch_size={p.patch_size}, num_register_tokens={p.num_register_tokens}, "
            f"ffn={vit.ffn_kind}, layerscale_init={p.layerscale_init}, qkv_bias={p.qkv_bias}):"
        ]
        for label, items in (("missing", missing), ("unexpected", unexpected), ("shape mismatch", mismatched)):
            if items:
                lines.append(f"  {label} ({len(items)}): {_listing(items)}")
        raise SSLKitError("\n".join(lines))
    vit.load_state_dict(state, strict=True)


def load_checkpoint(vit: ViT, path: str | Path, fmt: CheckpointFormat = "auto") -> None:
    """:func:`read_checkpoint` then :func:`load_weights`."""
    load_weights(vit, read_checkpoint(path), fmt, source=str(Path(path).expanduser()))


def _fit_pos_embed(vit: ViT, pos: Tensor, source: str) -> Tensor:
    """Any square grid, with or without the CLS position -> ``vit``'s ``[1, 1 + h * w, D]``.

    A ``pos_embed`` without the CLS position (timm ``no_embed_class``, the CLS position is in
    ``cls_token``) gets a zero CLS position.
    """
    n = pos.shape[1]
    if math.isqrt(n) ** 2 == n:
        pos = torch.cat([pos.new_zeros(1, 1, pos.shape[2]), pos], dim=1)
        n += 1
    side = math.isqrt(n - 1)
    if side * side != n - 1:
        raise SSLKitError(
            f"vit init_from: {source}: pos_embed has {n} positions, neither a square grid "
            f"nor a square grid plus the CLS position"
        )
    params = vit.params
    patches = resample_grid(pos[:, 1:], (side, side), vit.grid, params.pos_embed_antialias, params.pos_embed_offset)
    return torch.cat([pos[:, :1], patches], dim=1)


def _describe(state: dict[str, Tensor]) -> str:
    """What the checkpoint looks like: width, patch, depth, registers, and the size it matches."""
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


def _listing(items: Iterable[object]) -> str:
    names = [str(i) for i in items]
    more = f", ... (+{len(names) - _SHOWN} more)" if len(names) > _SHOWN else ""
    return ", ".join(names[:_SHOWN]) + more


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


def _timm_base(vit: ViT) -> str:
    size = vit.params.size
    if size in _TIMM_DINOV2 and _TIMM_DINOV2[size][3] == vit.ffn_kind:
        return size
    return "giant" if vit.ffn_kind == "swiglu" else "small"


def timm_model_name(vit: ViT) -> str:
    """The timm entry point whose architecture ``vit`` matches (up to :func:`timm_model_kwargs`),
    e.g. ``vit_small_patch14_dinov2`` or ``vit_base_patch14_reg4_dinov2``."""
    registers = f"_reg{_TIMM_REGISTERS}" if vit.num_register_tokens else ""
    return f"vit_{_timm_base(vit)}_patch{_TIMM_PATCH}{registers}_dinov2"


def _timm_hidden(dim: int, ffn: str) -> int:
    """The feed-forward width timm's DINOv2 entry points build for ``dim`` (SwiGLU: per half)."""
    return int(dim * 2.66667 * 2) // 2 if ffn == "swiglu" else int(dim * 4.0)


def timm_model_kwargs(vit: ViT) -> dict[str, int | float | bool | None]:
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


def to_timm_state_dict(vit: ViT) -> dict[str, Tensor]:
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
