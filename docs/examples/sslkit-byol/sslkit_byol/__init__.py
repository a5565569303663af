"""sslkit-byol: BYOL (Grill et al. 2020) as third-party sslkit plugins.

Installing this distribution registers the loss ``byol``, the head ``byol_mlp`` and the param-group
policy ``byol`` (a predictor at a higher lr; entry point
``sslkit``: ``byol = "sslkit_byol"``). A recipe puts the projector under ``model.heads`` (copied to
the EMA teacher) and the predictor under ``model.student_modules`` (student only)::

    model:
      heads:
        projector: {name: byol_mlp, hidden_dim: 4096, out_dim: 256}
      student_modules:
        predictor: {name: byol_mlp, hidden_dim: 4096, out_dim: 256, input_head: projector}
    losses:
      byol: {name: byol, projector: projector, predictor: predictor}
    teacher: {momentum: 0.996, momentum_end: 1.0}
"""

import sslkit
from sslkit.hookspecs import Register
from sslkit_byol.loss import BYOLLoss, BYOLLossParams, byol_loss
from sslkit_byol.mlp import BYOLMLP, BYOLMLPParams
from sslkit_byol.param_groups import BYOLGroups, BYOLGroupsParams

__version__ = "0.1.0"
__all__ = [
    "BYOLMLP", "BYOLGroups", "BYOLGroupsParams", "BYOLLoss", "BYOLLossParams", "BYOLMLPParams", "byol_loss",
    "register_heads", "register_losses", "register_param_groups",
]


@sslkit.hookimpl
def register_losses(register: Register) -> None:
    """Register the ``byol`` loss."""
    register("byol", BYOLLoss, BYOLLossParams,
             summary="BYOL: 2 - 2 cos(student prediction of one view, teacher projection of the other), symmetrised.")


@sslkit.hookimpl
def register_heads(register: Register) -> None:
    """Register the ``byol_mlp`` head (BYOL's projector and predictor)."""
    register("byol_mlp", BYOLMLP, BYOLMLPParams,
             summary="BYOL MLP: Linear -> BatchNorm (batch statistics, also on the teacher) -> ReLU -> Linear.")


@sslkit.hookimpl
def register_param_groups(register: Register) -> None:
    """Register the ``byol`` param-group policy (a predictor learning faster than the rest)."""
    register("byol", BYOLGroups, BYOLGroupsParams,
             summary="Uniform lr with the predictor at predictor_lr_mult x (10); no decay on 1-D parameters.")
