"""Built-in losses: DINO, iBOT, KoLeo and a patch-prototype clustering loss.

Each declares the step outputs it reads (``Loss.inputs``, see :mod:`sslkit.outputs`): ``dino``
the student's and teacher's CLS tokens through its head, ``ibot`` the masked patch tokens
through its head and the masks, ``koleo`` the student's global-crop CLS tokens,
``patch_prototype`` the backbone patch tokens (and the masks in masked mode). The teacher
temperature is a parameter of the losses that use it (``teacher_temp``), scheduled in the recipe.
"""

import sslkit
from sslkit.hookspecs import Register
from sslkit_plugins.losses.dino import DINOLoss, DINOLossParams
from sslkit_plugins.losses.ibot import IBOTLoss, IBOTLossParams
from sslkit_plugins.losses.koleo import KoLeoLoss, KoLeoLossParams
from sslkit_plugins.losses.patch_prototype import PatchPrototypeLoss, PatchPrototypeLossParams


@sslkit.hookimpl
def register_losses(register: Register) -> None:
    register(
        "dino",
        DINOLoss,
        DINOLossParams,
        summary="DINO cross-view distillation on CLS tokens (centering or Sinkhorn-Knopp teacher targets).",
    )
    register(
        "ibot",
        IBOTLoss,
        IBOTLossParams,
        summary="iBOT masked-token distillation, each masked crop weighted equally.",
    )
    register(
        "koleo",
        KoLeoLoss,
        KoLeoLossParams,
        summary="KoLeo nearest-neighbour spreading of the student's global-crop CLS features (local or distributed).",
    )
    register(
        "patch_prototype",
        PatchPrototypeLoss,
        PatchPrototypeLossParams,
        summary="Student predicts Sinkhorn-Knopp prototype assignments of teacher patch tokens (masked or all).",
    )
