"""DINOv2 optimizer groups: layer-wise lr decay, patch-embed lr factor, no decay on
biases / norms / LayerScale (DINOv2, Oquab et al. 2023, appendix; layer decay from BEiT, Bao et al.
2022, section 2.6)."""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from sslkit.components import Backbone, BuildContext, ParamGroup
from sslkit.errors import SSLKitError
from sslkit.param_grouping import merge, trainable_params
from sslkit.params import param


@dataclass
class DINOv2GroupsParams:
    """Parameters of the ``dinov2`` param-group policy."""

    layer_decay: float = param(
        0.9,
        "Layer-wise lr decay: multiplier layer_decay ** (num_layers + 1 - layer_id) "
        "(0.9 official default, 1.0 in the ViT-L/14 and ViT-g/14 configs: no decay).",
        ge=0.0,
        le=1.0,
    )
    patch_embed_lr_mult: float = param(
        0.2, "Extra lr multiplier of the patch embedding (on top of the layer decay).", ge=0.0, le=1.0
    )


def _layers_label(layers: list[int]) -> str:
    return f"layer_{layers[0]}" if len(layers) == 1 else f"layers_{min(layers)}-{max(layers)}"


class DINOv2Groups:
    """Layer-wise lr decay groups of the official DINOv2 recipe.

    For a parameter at ``layer_id`` (the backbone's :meth:`~sslkit.components.Backbone.layer_id`:
    0 for the embeddings, ``i + 1`` for block ``i``, ``num_layers + 1`` after the blocks; heads
    and loss parameters are at ``num_layers + 1``):

    - ``lr_multiplier = layer_decay ** (num_layers + 1 - layer_id)``, times ``patch_embed_lr_mult``
      for backbone parameters named ``patch_embed*``; e.g. ViT-L (24 blocks) with 0.9:
      patch embedding 0.9^25 * 0.2, block 12 0.9^12, block 23 0.9^1, heads 1.0;
    - ``wd_multiplier`` 0 for biases, norm weights, LayerScale gammas and other 1-D parameters,
      1 otherwise; every group follows the weight-decay schedule;
    - ``frozen_steps`` for the parameters that a head or student-only module freezes
      (:meth:`~sslkit.components.Head.frozen_for_steps`, e.g. the DINO head's prototype layer for
      its ``freeze_last_layer_epochs``), converted with ``ctx.epoch_length`` steps per epoch.

    Parameters with identical settings share one group, named after its layers, e.g.
    ``layer_3/decay``, ``layer_0/patch_embed/decay``, ``layer_25/decay/frozen_1250``.
    """

    def __init__(self, params: DINOv2GroupsParams, ctx: BuildContext) -> None:
        self.params = params
        self.epoch_length = ctx.epoch_length

    def groups(self, model: nn.Module) -> list[ParamGroup]:
        """One group per distinct (lr multiplier, weight-decay multiplier, frozen steps)."""
        backbone = model.backbone
        if not isinstance(backbone, Backbone):
            raise SSLKitError(f"param_groups dinov2: the model's 'backbone' is a {type(backbone).__name__}, not an "
                              "sslkit Backbone; layer-wise lr decay needs Backbone.num_layers and layer_id()")
        top = backbone.num_layers + 1
        entries: list[tuple[tuple[float, float, int], tuple[int, bool], nn.Parameter]] = []
        for p in trainable_params(model, self.epoch_length):
            layer = backbone.layer_id(p.local_name) if p.part == "backbone" else top
            patch_embed = p.part == "backbone" and "patch_embed" in p.local_name.split(".")
            lr = self.params.layer_decay ** (top - layer) * (self.params.patch_embed_lr_mult if patch_embed else 1.0)
            key = (lr, 0.0 if p.no_decay else 1.0, p.frozen_steps)
            entries.append((key, (layer, patch_embed), p.param))
        result: list[ParamGroup] = []
        for (lr, wd, frozen), labels, params in merge(entries):
            name = _layers_label(sorted({layer for layer, _ in labels}))
            if all(patch_embed for _, patch_embed in labels):
                name += "/patch_embed"
            name += "/no_decay" if wd == 0.0 else "/decay"
            if frozen:
                name += f"/frozen_{frozen}"
            result.append(ParamGroup(name=name, params=params, lr_multiplier=lr, wd_multiplier=wd, frozen_steps=frozen))
        return result
