"""The ``latent_predictions`` output kind: the student-only predictor's outputs at the masked positions.

The producer runs the student's backbone pass over the global crops with the request's masking
(``drop``: the masked patches never enter the encoder and their rows of patch outputs are zero;
``replace``: they enter as the backbone's mask token), reads the predictor named in the request's
``modules`` (``Output(..., modules=("predictor",))``: the plan checks that it exists on the student and
keeps it trainable) and hands it the patch tokens and the step's masks:

    predictions = predictor(patches, masks)   # [M, D_out], in masks.nonzero() order

so the request's ``positions`` is ``masked`` (I-JEPA, Assran et al. 2023, section 3: the predictor
outputs one representation per target position).
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor

from sslkit.outputs import Output, StepView


@dataclass
class NoOptions:
    """The ``latent_predictions`` output kind takes no options."""


def produce_latent_predictions(request: Output, view: StepView) -> Tensor:
    """Predictions ``[M, D_out]`` of the request's one module (a ``latent_predictor``) at the masked
    positions of the student's global crops, from the pass with the request's masking."""
    if (request.model != "student" or request.crops != "global" or request.masking not in ("drop", "replace")
            or request.positions != "masked"):
        raise ValueError(f"{request.describe()}: predictions are made from the student's pass over the global crops "
                         "with masking 'drop' or 'replace', at positions='masked'")
    if len(request.modules) != 1:
        raise ValueError(f"{request.describe()}: name the predictor in modules=(...), exactly one; got "
                         f"{request.modules}")
    masks = view.masks
    if masks is None:
        raise ValueError(f"{request.describe()}: the step has no masks")
    patches = view.backbone_pass(request.model, "global", request.masking).patches
    if patches is None:
        raise ValueError(f"{request.describe()}: the backbone returned no patch tokens")
    return view.module(request.model, request.modules[0])(patches, masks)
