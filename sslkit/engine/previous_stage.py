"""Continuing from a previous stage (``init_from`` at the top of a recipe): the student and the teacher
start from the stage's last checkpoint (DINOv2's high-resolution adaptation, Oquab et al. 2023,
appendix B.2: "we initialise the model with the pretrained weights then train it for 10k iterations
with the same procedure").

Backbones load through their ``load_external_weights`` (the ``vit`` resamples its position embedding
to this recipe's image size and resizes its patch kernel; others load by name); every other
tensor (heads, student-only modules, the losses' state such as centers) must match by name and shape.
The optimizer and the schedules are not taken: the stage's recipe starts them afresh.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from sslkit.components import Backbone
from sslkit.engine.checkpoint import load_checkpoint, resolve_checkpoint
from sslkit.errors import SSLKitError

REPORT_FILE = "stage_init_report.json"


def _load_rest(module: nn.Module, state: dict[str, Tensor], side: str, source: Path) -> int:
    """Everything of ``module`` outside its backbone, strictly; the number of tensors loaded."""
    own = {k: v for k, v in module.state_dict().items() if not k.startswith("backbone.")}
    theirs = {k: v for k, v in state.items() if not k.startswith("backbone.")}
    missing = sorted(set(own) - set(theirs))
    unexpected = sorted(set(theirs) - set(own))
    wrong = [f"{k} {tuple(theirs[k].shape)} -> {tuple(v.shape)}" for k, v in own.items()
             if k in theirs and theirs[k].shape != v.shape]
    if missing or unexpected or wrong:
        raise SSLKitError(f"init_from {source}: the {side}'s heads / modules / loss state differ from this recipe's "
                          f"(missing: {', '.join(missing[:6]) or 'none'}; not in this recipe: "
                          f"{', '.join(unexpected[:6]) or 'none'}; shapes: {'; '.join(wrong[:6]) or 'equal'}). A later "
                          "stage may change crops, resolution and schedules, not the heads or losses")
    with torch.no_grad():
        for key, value in own.items():
            value.copy_(theirs[key])
    return len(own)


def continue_from(student: nn.Module, teacher: nn.Module, source: str) -> dict[str, Any]:
    """Load the last checkpoint of the run at ``source`` into ``student`` and ``teacher`` (unwrapped, before
    any strategy wraps them); return the report (also what was resampled)."""
    path = Path(source).expanduser()
    if not path.exists():
        raise SSLKitError(f"init_from: {path} does not exist (the previous stage's run directory or checkpoint)")
    file = resolve_checkpoint(path) if path.is_dir() else path
    payload = load_checkpoint(file)
    report: dict[str, Any] = {"source": str(source), "checkpoint": str(file), "step": int(payload["step"])}
    for side, module in (("student", student), ("teacher", teacher)):
        state: dict[str, Tensor] = payload[side]
        backbone = {k[len("backbone."):]: v for k, v in state.items() if k.startswith("backbone.")}
        own_backbone = module.get_submodule("backbone")
        assert isinstance(own_backbone, Backbone)
        result = own_backbone.load_external_weights(backbone, "auto")
        if result.missing or result.mismatched:
            raise SSLKitError(f"init_from {source}: the {side} backbone does not fit this recipe's (missing: "
                              f"{', '.join(result.missing[:6]) or 'none'}; mismatched: "
                              f"{', '.join(result.mismatched[:6]) or 'none'})")
        report[side] = {"backbone_tensors": len(result.loaded), "reshaped": result.reshaped,
                        "other_tensors": _load_rest(module, state, side, path)}
    return report
