"""What the weight conversions of the ``vit`` backbone read of it (to and from the DINOv2, timm and
Hugging Face layouts), as a protocol, so that those modules need not import the backbone that uses them."""

from __future__ import annotations

from typing import Any, Protocol

from torch import nn

from sslkit_plugins.backbones.vit_blocks import PatchEmbed
from sslkit_plugins.backbones.vit_params import ViTParams


class ViTLike(Protocol):
    """The ``vit`` backbone's architecture facts (read-only) and its weights."""

    @property
    def params(self) -> ViTParams: ...

    @property
    def embed_dim(self) -> int: ...

    @property
    def num_heads(self) -> int: ...

    @property
    def num_layers(self) -> int: ...

    @property
    def num_register_tokens(self) -> int: ...

    @property
    def grid(self) -> tuple[int, int]: ...

    @property
    def ffn_kind(self) -> str: ...

    @property
    def mlp_hidden(self) -> int: ...

    @property
    def patch_embed(self) -> PatchEmbed: ...

    @property
    def norm(self) -> nn.LayerNorm: ...

    def state_dict(self) -> dict[str, Any]: ...
