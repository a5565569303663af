"""Weights of the ``vit`` backbone to and from Hugging Face ``transformers``' DINOv2 models
(``Dinov2Model``; ``Dinov2WithRegistersModel`` with register tokens).

The two architectures compute the same function (Oquab et al. 2024, DINOv2, section 4; registers:
Darcet et al. 2024): CLS + patches get the position embedding (CLS position first), registers are
inserted after the CLS token without one, pre-norm blocks with LayerScale, final LayerNorm. The
names differ, and Hugging Face splits our fused ``qkv`` into ``query`` / ``key`` / ``value``. We write
the layout of the checkpoints on the Hub (``attention.attention.query``, SwiGLU ``mlp.weights_in`` /
``weights_out``), which every ``transformers`` release from 4.48 loads (5.x renames it while loading),
and read both that and the 5.x names (``q_proj``..., ``gate_proj`` / ``up_proj`` / ``down_proj``).
"""

from __future__ import annotations

import re
from typing import Any

import torch
from torch import Tensor

from sslkit.errors import SSLKitError
from sslkit_plugins.backbones.vit_protocol import ViTLike

_EMBEDDINGS = {
    "cls_token": "embeddings.cls_token",
    "mask_token": "embeddings.mask_token",
    "pos_embed": "embeddings.position_embeddings",
    "reg_token": "embeddings.register_tokens",
    "patch_embed.proj.weight": "embeddings.patch_embeddings.projection.weight",
    "patch_embed.proj.bias": "embeddings.patch_embeddings.projection.bias",
    "norm.weight": "layernorm.weight",
    "norm.bias": "layernorm.bias",
}
#: our block sub-name -> Hub name (SwiGLU: fc1/fc2 are weights_in/weights_out).
_BLOCK = {
    "norm1": "norm1",
    "attn.proj": "attention.output.dense",
    "ls1.gamma": "layer_scale1.lambda1",
    "norm2": "norm2",
    "ls2.gamma": "layer_scale2.lambda1",
}
_SWIGLU = {"mlp.fc1": "mlp.weights_in", "mlp.fc2": "mlp.weights_out"}
_QKV = ("query", "key", "value")
_LAYER = re.compile(r"^encoder\.layer\.(\d+)\.(.+)$")
#: names of transformers 5.x (and the Hub's) -> our block sub-names, for reading.
_READ_BLOCK = {
    **{hub: ours for ours, hub in _BLOCK.items()},
    **{hub: ours for ours, hub in _SWIGLU.items()},
    "attention.o_proj": "attn.proj",
    "mlp.down_proj": "mlp.fc2",
    "mlp.fc1": "mlp.fc1",
    "mlp.fc2": "mlp.fc2",
}
_READ_QKV = {"attention.attention.query": 0, "attention.attention.key": 1, "attention.attention.value": 2,
             "attention.q_proj": 0, "attention.k_proj": 1, "attention.v_proj": 2}
_READ_GLU = {"mlp.gate_proj": 0, "mlp.up_proj": 1}


def is_transformers_layout(state: dict[str, Tensor]) -> bool:
    return any(k.startswith(("embeddings.patch_embeddings.", "encoder.layer.")) for k in state)


def _split_param(name: str) -> tuple[str, str]:
    module, _, leaf = name.rpartition(".")
    return module, leaf


def to_transformers(vit: ViTLike) -> tuple[dict[str, Tensor], dict[str, Any]]:
    """``vit``'s weights in the Hub layout and the ``config.json`` of the model that loads them:
    ``Dinov2Model`` (``Dinov2WithRegistersModel`` with registers) with ``image_size`` = the backbone's
    native grid times the patch, so that no position-embedding interpolation happens at that size.
    Without LayerScale the gammas are written as ones (Hugging Face always has LayerScale)."""
    p = vit.params
    mlp_ratio: float | int = int(p.mlp_ratio) if float(p.mlp_ratio).is_integer() else p.mlp_ratio
    hf_hidden = int(vit.embed_dim * mlp_ratio)
    if vit.ffn_kind == "swiglu":
        hf_hidden = (int(hf_hidden * 2 / 3) + 7) // 8 * 8
    if hf_hidden != vit.mlp_hidden:
        raise SSLKitError(
            f"export --format transformers: transformers builds a feed-forward of width {hf_hidden} for "
            f"embed_dim {vit.embed_dim} and mlp_ratio {p.mlp_ratio} ({vit.ffn_kind}); this backbone's is "
            f"{vit.mlp_hidden}. Use an mlp_ratio for which both agree (e.g. 4.0)."
        )
    own = {k: v.detach() for k, v in vit.state_dict().items()}
    out: dict[str, Tensor] = {}
    for name, value in own.items():
        if name in _EMBEDDINGS:
            out[_EMBEDDINGS[name]] = value
            continue
        _, index, rest = name.split(".", 2)
        prefix = f"encoder.layer.{index}."
        module, leaf = _split_param(rest)
        if module == "attn.qkv":
            for hub, part in zip(_QKV, value.chunk(3, dim=0), strict=True):
                out[f"{prefix}attention.attention.{hub}.{leaf}"] = part
        elif module in _SWIGLU and vit.ffn_kind == "swiglu":
            out[f"{prefix}{_SWIGLU[module]}.{leaf}"] = value
        elif rest in _BLOCK:
            out[prefix + _BLOCK[rest]] = value
        else:
            out[prefix + _BLOCK.get(module, module) + f".{leaf}"] = value
    if p.layerscale_init is None:
        for i in range(vit.num_layers):
            for j in (1, 2):
                out[f"encoder.layer.{i}.layer_scale{j}.lambda1"] = torch.ones(vit.embed_dim)
    registers = vit.num_register_tokens
    config: dict[str, Any] = {
        "architectures": ["Dinov2WithRegistersModel" if registers else "Dinov2Model"],
        "model_type": "dinov2_with_registers" if registers else "dinov2",
        "hidden_size": vit.embed_dim,
        "num_hidden_layers": vit.num_layers,
        "num_attention_heads": vit.num_heads,
        "mlp_ratio": mlp_ratio,
        "hidden_act": "gelu",
        "hidden_dropout_prob": 0.0,
        "attention_probs_dropout_prob": 0.0,
        "initializer_range": 0.02,
        "layer_norm_eps": vit.norm.eps,
        "image_size": vit.grid[0] * p.patch_size,
        "patch_size": p.patch_size,
        "num_channels": p.in_chans,
        "qkv_bias": p.qkv_bias,
        "layerscale_value": 1.0 if p.layerscale_init is None else p.layerscale_init,
        "drop_path_rate": 0.0,
        "use_swiglu_ffn": vit.ffn_kind == "swiglu",
        "torch_dtype": "float32",
    }
    if registers:
        config["num_register_tokens"] = registers
    return out, config


def from_transformers(state: dict[str, Tensor]) -> dict[str, Tensor]:
    """Hub or transformers 5.x names -> ours; ``query`` / ``key`` / ``value`` (and SwiGLU ``gate`` /
    ``up``) are concatenated into our fused tensors. Names without a counterpart are kept as they are
    (the caller reports them as unexpected)."""
    reverse = {hub: ours for ours, hub in _EMBEDDINGS.items()}
    out: dict[str, Tensor] = {}
    fused: dict[str, dict[int, Tensor]] = {}
    for name, value in state.items():
        if name in reverse:
            out[reverse[name]] = value
            continue
        match = _LAYER.match(name)
        if match is None:
            out[name] = value
            continue
        index, rest = match.groups()
        prefix = f"blocks.{index}."
        module, leaf = _split_param(rest)
        if module in _READ_QKV:
            fused.setdefault(f"{prefix}attn.qkv.{leaf}", {})[_READ_QKV[module]] = value
        elif module in _READ_GLU:
            fused.setdefault(f"{prefix}mlp.fc1.{leaf}", {})[_READ_GLU[module]] = value
        elif rest in _READ_BLOCK:
            out[prefix + _READ_BLOCK[rest]] = value
        elif module in _READ_BLOCK:
            out[f"{prefix}{_READ_BLOCK[module]}.{leaf}"] = value
        else:
            out[name] = value
    for name, parts in fused.items():
        count = 3 if ".attn.qkv." in name else 2
        if sorted(parts) == list(range(count)):
            out[name] = torch.cat([parts[i] for i in range(count)], dim=0)
        else:  # an incomplete set cannot be fused: report the parts under our name
            out.update({f"{name}[part {i}]": t for i, t in parts.items()})
    return out
