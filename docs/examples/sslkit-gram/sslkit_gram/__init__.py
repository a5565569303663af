"""sslkit-gram: DINOv3 Gram anchoring as an sslkit loss plugin.

Installing this distribution registers the loss ``gram_anchoring`` (entry point ``sslkit``:
``gram = "sslkit_gram"``); use it in a recipe next to the DINOv2 losses::

    losses:
      gram: {name: gram_anchoring, weight: 1.0, start_step: 10000, refresh_every: 10000}
"""

from collections.abc import Callable

import sslkit
from sslkit_gram.loss import GramAnchoringLoss, GramAnchoringParams

__version__ = "0.1.0"
__all__ = ["GramAnchoringLoss", "GramAnchoringParams", "register_losses"]


@sslkit.hookimpl
def register_losses(register: Callable[..., None]) -> None:
    """Register the ``gram_anchoring`` loss."""
    register("gram_anchoring", GramAnchoringLoss, GramAnchoringParams,
             summary="DINOv3 Gram anchoring: MSE between student and Gram-teacher patch-similarity matrices.")
