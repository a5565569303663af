"""The student's context for the predictor: its patch tokens of the masked pass and the mask.

A head receives one tensor, so this output kind hands the predictor both things it needs in one:
the student's patch tokens of the global crops after the pass with the step's masking (``drop``:
the masked patches never entered the encoder and their rows are zero; ``replace``: they entered as
the backbone's mask token), with one channel appended that is 1 at the masked positions (the
positions to predict) and 0 elsewhere:

    context = [patches | mask]   # [n_global * B, N, D + 1]

The predictor (:class:`sslkit_latent_mim.predictor.LatentPredictor`, a student-only module applied
as the request's head) splits the channel off again.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from sslkit.outputs import Output, StepView


@dataclass
class NoOptions:
    """The ``latent_context`` output kind takes no options."""


def pack_context(patches: Tensor, masks: Tensor) -> Tensor:
    """``[patches | masks]``: patch tokens ``[C, N, D]`` with the bool mask ``[C, N]`` as a last channel."""
    if masks.shape != patches.shape[:2]:
        raise ValueError(f"masks {tuple(masks.shape)} do not match the patch tokens {tuple(patches.shape)}")
    return torch.cat([patches, masks.unsqueeze(-1).to(patches.dtype)], dim=-1)


def unpack_context(context: Tensor) -> tuple[Tensor, Tensor]:
    """The patch tokens ``[C, N, D]`` and the bool mask ``[C, N]`` of a packed context."""
    return context[..., :-1], context[..., -1] > 0.5


def produce_latent_context(request: Output, view: StepView) -> Tensor:
    """``[patches | mask]`` ``[n_global * B, N, D + 1]`` of the request's model on the global crops
    after the pass with the request's masking (``drop`` or ``replace``)."""
    if request.crops != "global" or request.masking not in ("drop", "replace"):
        raise ValueError(f"{request.describe()}: the context is the global crops' pass with masking 'drop' or "
                         "'replace'")
    masks = view.masks
    if masks is None:
        raise ValueError(f"{request.describe()}: the step has no masks")
    patches = view.backbone_pass(request.model, "global", request.masking).patches
    if patches is None:
        raise ValueError(f"{request.describe()}: the backbone returned no patch tokens")
    return pack_context(patches, masks)
