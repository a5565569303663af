"""Built-in step-output kinds (see :mod:`sslkit.outputs`), registered like any plugin's."""

import sslkit
from sslkit.hookspecs import Register
from sslkit_plugins.outputs.step import produce_backbone, produce_images, produce_masked_crops, produce_masks
from sslkit_plugins.outputs.tokens import (
    NoOptions,
    produce_blocks,
    produce_cls,
    produce_patches,
    produce_registers,
)


@sslkit.hookimpl
def register_outputs(register: Register) -> None:
    register("cls", produce_cls, NoOptions, summary="Backbone CLS tokens after the final norm [C*B, D].")
    register("patches", produce_patches, NoOptions,
             summary="Backbone patch tokens [C*B, N, D], or the masked / visible ones [M, D].")
    register("registers", produce_registers, NoOptions, summary="Backbone register tokens [C*B, R, D].")
    register("blocks", produce_blocks, NoOptions,
             summary="Mean of the requested blocks' patch outputs (before the final norm) [C*B, N, D] or [M, D].")
    register("images", produce_images, NoOptions, summary="The normalised crops [C*B, 3, H, W].")
    register("masks", produce_masks, NoOptions, summary="Bool patch masks of the global crops [n_global*B, N].")
    register("masked_crops", produce_masked_crops, NoOptions,
             summary="Bool [n_global*B]: the global crops selected for masking.")
    register("backbone", produce_backbone, NoOptions, summary="The model's backbone module (read-only).")
