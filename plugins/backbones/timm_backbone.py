"""The ``timm`` backbone: any model of the timm library by name.

timm Vision Transformers (``timm.models.vision_transformer.VisionTransformer`` and its
subclasses) give CLS, patch and register tokens and take patch masks: a learnable mask token
of this backbone replaces the patch embeddings of masked patches before timm adds the
position embedding (iBOT, Zhou et al. 2022, section 3.2). They are built with ``dynamic_img_size`` so
that global and local crops of any size that is a multiple of the patch size work.
Every other architecture (ResNets, ConvNeXts, ...) gives its pooled features as the CLS token
only: no patch tokens, no masks.
"""

from __future__ import annotations

import difflib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol, cast

import timm
import torch
from timm.models.vision_transformer import VisionTransformer
from torch import Tensor, nn

from sslkit.components import Backbone, BackboneOutput, BuildContext
from sslkit.errors import SSLKitError
from sslkit.outputs import Masking
from sslkit.params import param
from sslkit_plugins.backbones.layer_ids import transformer_layer_id

_PREFIX = "model."


@dataclass
class TimmBackboneParams:
    """Parameters of the ``timm`` backbone."""

    model_name: str = param(
        "vit_small_patch16_224",
        "timm model name as in timm.list_models(), e.g. vit_small_patch16_224, "
        "vit_small_patch14_dinov2, resnet50, convnext_tiny.",
    )
    pretrained: bool = param(
        False,
        "Load timm's pretrained weights: DOWNLOADS them from the Hugging Face Hub on first use "
        "(or reads timm's cache); false starts from random weights.",
    )
    img_size: int | None = param(
        None,
        "Image side the model's position embedding is created for (ViTs only; timm resamples "
        "pretrained position embeddings to it). null keeps the model's default.",
        ge=1,
    )
    drop_path_rate: float = param(
        0.0, "Stochastic-depth rate (timm ramps it linearly over the blocks); training only.", ge=0.0, lt=1.0
    )


class _TimmModel(Protocol):
    """What every timm model offers (timm's base class is typed as a plain module)."""

    def forward_features(self, images: Tensor) -> Tensor: ...

    def forward_head(self, features: Tensor, pre_logits: bool = False) -> Tensor: ...


class TimmBackbone(Backbone):
    """A timm model: ViTs -> normalised CLS, patch and register tokens (masks supported);
    other models -> ``forward_features`` pooled by the model's own head pooling as CLS only."""

    def __init__(self, params: TimmBackboneParams, ctx: BuildContext) -> None:
        super().__init__()
        self.params = params
        self.model = _create(params)
        self.model_name = params.model_name
        self.embed_dim = int(getattr(self.model, "num_features"))  # noqa: B009 - every timm model has it
        vit = self.model
        self.is_vit = isinstance(vit, VisionTransformer)
        if isinstance(vit, VisionTransformer):
            self.patch_size = int(vit.patch_embed.patch_size[0])
            self.num_layers = len(vit.blocks)
            self.supports_masking = True
            self.supports_patch_tokens = True
            self.supports_block_outputs = True
            self.num_cls_tokens = 0 if vit.cls_token is None else 1
            self.num_register_tokens = 0 if vit.reg_token is None else int(vit.reg_token.shape[1])
            self.num_prefix_tokens = int(vit.num_prefix_tokens)
            self.mask_token = nn.Parameter(torch.zeros(1, self.embed_dim))

    @property
    def blocks(self) -> nn.Module | None:
        """The ViT's transformer blocks (the units a sharded strategy wraps); ``None`` otherwise."""
        return self.model.blocks if isinstance(self.model, VisionTransformer) else None

    def forward(self, images: Tensor, masks: Tensor | None = None, *, masking: Masking = "replace",
                blocks: Sequence[int] = ()) -> BackboneOutput:
        """Masked patches are replaced by the mask token; ``blocks``: patch outputs of these blocks
        (ViTs; the engine asks only backbones with ``supports_block_outputs``)."""
        if masking == "drop":
            raise SSLKitError("backbone timm cannot drop masked patches; use the vit backbone")
        vit = self.model
        if not isinstance(vit, VisionTransformer):
            if masks is not None:
                raise SSLKitError(
                    f"backbone timm model {self.model_name!r} cannot take patch masks: it is not a Vision "
                    "Transformer and has no patch tokens. Losses on masked patch tokens (iBOT, patch-prototype "
                    "losses) need a ViT backbone (vit, or timm with a ViT model such as vit_small_patch14_dinov2)."
                )
            model = cast(_TimmModel, vit)
            pooled = model.forward_head(model.forward_features(images), pre_logits=True)
            return BackboneOutput(cls=pooled)
        x = vit.patch_embed(images)  # dynamic_img_size: [B, h, w, D]
        if masks is not None:
            if masks.shape != (x.shape[0], x.shape[1] * x.shape[2]):
                raise SSLKitError(
                    f"backbone timm: masks of shape {tuple(masks.shape)} for {x.shape[0]} images of "
                    f"{x.shape[1]}x{x.shape[2]} patches"
                )
            masked = masks.reshape(x.shape[:3]).unsqueeze(-1)
            x = torch.where(masked, self.mask_token.to(x.dtype), x)
        x = vit.norm_pre(vit.patch_drop(vit._pos_embed(x)))
        wanted, intermediate = set(blocks), {}
        for i, block in enumerate(vit.blocks):
            x = block(x)
            if i in wanted:
                intermediate[i] = x[:, self.num_prefix_tokens :]
        x = vit.norm(x)
        cls = x[:, 0] if self.num_cls_tokens else vit.forward_head(x, pre_logits=True)
        first, r = self.num_cls_tokens, self.num_register_tokens
        registers = x[:, first : first + r] if r else None
        return BackboneOutput(cls=cls, patches=x[:, self.num_prefix_tokens :], registers=registers,
                              blocks=intermediate)

    def mask_only_parameters(self) -> list[str]:
        """ViTs: our mask token (unused without masks); other models have none."""
        return ["mask_token"] if self.is_vit else []

    def layer_id(self, param_name: str) -> int:
        """ViTs: 0 for embeddings and the mask token, ``i + 1`` for ``blocks.i``, ``num_layers + 1``
        after; other models: ``num_layers + 1`` (no layer-wise decay)."""
        if not self.is_vit:
            return self.num_layers + 1
        return transformer_layer_id(param_name, self.num_layers)

    def export_weights(self) -> tuple[dict[str, Tensor], dict[str, str]]:
        """The timm model's own state dict (without our mask token) and its name: load with
        ``timm.create_model(meta["timm_model"], pretrained=True, pretrained_cfg_overlay=dict(file=PATH))``
        (plus ``img_size`` when set)."""
        weights = {k[len(_PREFIX) :]: v.detach() for k, v in self.state_dict().items() if k.startswith(_PREFIX)}
        metadata = {"format": "timm", "timm_model": self.model_name}
        if self.params.img_size is not None:
            metadata["img_size"] = str(self.params.img_size)
        return weights, metadata


def _create(params: TimmBackboneParams) -> nn.Module:
    """``timm.create_model`` without a classifier; ViTs with ``dynamic_img_size``."""
    name = params.model_name
    if not timm.is_model(name):
        close = difflib.get_close_matches(name, timm.list_models(), n=5, cutoff=0.6)
        hint = f"; close matches: {', '.join(close)}" if close else "; see timm.list_models()"
        raise SSLKitError(f"backbone timm: unknown model_name {name!r}{hint}")
    kwargs: dict[str, Any] = {"num_classes": 0, "drop_path_rate": params.drop_path_rate}
    if params.img_size is not None:
        kwargs["img_size"] = params.img_size
    try:
        return timm.create_model(name, pretrained=params.pretrained, dynamic_img_size=True, **kwargs)
    except TypeError:
        pass  # the architecture has no dynamic_img_size option: not a ViT
    try:
        return timm.create_model(name, pretrained=params.pretrained, **kwargs)
    except TypeError as exc:
        raise SSLKitError(
            f"backbone timm: cannot build {name!r} with {kwargs}: {exc} "
            "(img_size and drop_path_rate apply only to models that take them)"
        ) from exc
