"""Layer indices of transformer parameters for layer-wise lr decay (BEiT, Bao et al. 2022, appendix; DINOv2, Oquab et
al. 2023, appendix)."""

from __future__ import annotations

import re

#: Parameter-name components of the embedding layer (layer 0), in our, timm's and DINOv2's naming.
EMBEDDING_NAMES = frozenset({"patch_embed", "pos_embed", "cls_token", "mask_token", "reg_token", "register_tokens"})

_BLOCK = re.compile(r"(?:^|\.)blocks\.(\d+)\.")


def transformer_layer_id(param_name: str, num_layers: int) -> int:
    """0 for embeddings (patch embedding, position embedding, CLS / mask / register tokens),
    ``i + 1`` for a parameter of ``blocks.i``, ``num_layers + 1`` for everything else (final norm).

    ``param_name`` may carry a prefix (``backbone.``, ``model.``).
    """
    if EMBEDDING_NAMES.intersection(param_name.split(".")):
        return 0
    match = _BLOCK.search(param_name)
    return int(match.group(1)) + 1 if match else num_layers + 1
