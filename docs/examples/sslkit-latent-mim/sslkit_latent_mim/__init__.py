"""sslkit-latent-mim: latent masked prediction (data2vec 2.0 / I-JEPA style) as sslkit plugins.

Installing this distribution registers (entry point ``sslkit``: ``latent_mim = "sslkit_latent_mim"``):

- the output kinds ``latent_targets`` (the teacher's normalised top-K block average) and
  ``latent_predictions`` (the student-only predictor's outputs at the masked positions);
- the head ``latent_predictor`` (a student-only module: ``model.student_modules``);
- the loss ``latent_mim``.

In a recipe::

    model:
      student_modules:
        predictor: {name: latent_predictor, dim: 128, depth: 2}
    losses:
      latent: {name: latent_mim, predictor: predictor, top_k: 3}
    masking:
      crop_policy: {name: random_fraction, fraction: 1.0}
      masker: {name: block, min_ratio: 0.6, max_ratio: 0.75}
"""

import sslkit
from sslkit.hookspecs import Register
from sslkit_latent_mim.loss import LatentMIMLoss, LatentMIMParams
from sslkit_latent_mim.predictions import NoOptions, produce_latent_predictions
from sslkit_latent_mim.predictor import LatentPredictor, LatentPredictorParams
from sslkit_latent_mim.targets import LatentTargetOptions, produce_latent_targets

__version__ = "0.1.0"
__all__ = ["LatentMIMLoss", "LatentMIMParams", "LatentPredictor", "LatentPredictorParams", "register_heads",
           "register_losses", "register_outputs"]


@sslkit.hookimpl
def register_outputs(register: Register) -> None:
    """Register the ``latent_targets`` and ``latent_predictions`` output kinds."""
    register("latent_targets", produce_latent_targets, LatentTargetOptions,
             summary="Teacher targets: layer-normalised mean of the (normalised) block outputs named in blocks= "
                     "[C*B, N, D] or [M, D] with positions masked / visible.")
    register("latent_predictions", produce_latent_predictions, NoOptions,
             summary="The student-only predictor (named in modules=) at the masked positions of the student's "
                     "drop/replace pass [M, D].")


@sslkit.hookimpl
def register_heads(register: Register) -> None:
    """Register the ``latent_predictor`` student-only module."""
    register("latent_predictor", LatentPredictor, LatentPredictorParams,
             summary="Student-only predictor: mask tokens + 2-D positions + transformer blocks -> predictions "
                     "at the masked positions [M, D].")


@sslkit.hookimpl
def register_losses(register: Register) -> None:
    """Register the ``latent_mim`` loss."""
    register("latent_mim", LatentMIMLoss, LatentMIMParams,
             summary="Latent masked prediction (data2vec 2.0 / I-JEPA): MSE between predictor outputs and the EMA "
                     "teacher's normalised top-K block average at masked positions.")
