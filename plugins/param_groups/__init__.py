"""Built-in parameter-group policies: how the student's parameters are split for the optimizer."""

import sslkit
from sslkit.hookspecs import Register
from sslkit_plugins.param_groups.dinov2 import DINOv2Groups, DINOv2GroupsParams
from sslkit_plugins.param_groups.two_group import TwoGroup, TwoGroupParams


@sslkit.hookimpl
def register_param_groups(register: Register) -> None:
    register(
        "dinov2",
        DINOv2Groups,
        DINOv2GroupsParams,
        summary="Layer-wise lr decay (0.9), patch-embed lr x0.2, no decay on biases/norms/LayerScale.",
    )
    register(
        "two_group",
        TwoGroup,
        TwoGroupParams,
        summary="Decay / no-decay groups with a uniform lr (optionally reproduces the first-group-only "
        "weight-decay bug, for ablations).",
    )
