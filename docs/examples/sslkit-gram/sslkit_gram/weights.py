"""Reading the backbone weights of a frozen Gram teacher from disk.

Two sources:

- an sslkit checkpoint (``RUN/checkpoints/step_*.pt``, or the run directory ``RUN`` for its
  latest checkpoint): the EMA teacher's backbone, which is what DINOv3 anchors to;
- a ``.safetensors`` file holding a backbone's own state dict (keys as in
  ``backbone.state_dict()``, optionally prefixed with ``backbone.``). Files written by
  ``sslkit export`` use timm's layout instead and do not load into an sslkit backbone: point
  at the run's checkpoint for those.

Problems are reported as :class:`ValueError` (the engine shows them with the recipe key).
"""

from __future__ import annotations

import re
from pathlib import Path

import torch
from safetensors.torch import load_file
from torch import Tensor

#: The marker and layout of an sslkit checkpoint file (see ``sslkit train``'s run directory).
CHECKPOINT_FORMAT = "sslkit-checkpoint"
_CHECKPOINT_NAME = re.compile(r"^step_(\d+)\.pt$")
_BACKBONE_PREFIX = "backbone."


def _latest_checkpoint(run_dir: Path) -> Path:
    folder = run_dir if run_dir.name == "checkpoints" else run_dir / "checkpoints"
    found = sorted((p for p in folder.glob("step_*.pt") if _CHECKPOINT_NAME.match(p.name)),
                   key=lambda p: int(_CHECKPOINT_NAME.match(p.name).group(1)))  # type: ignore[union-attr]
    if not found:
        raise ValueError(f"gram_anchoring: no checkpoint in {folder} (expected step_*.pt files)")
    return found[-1]


def _strip_backbone_prefix(weights: dict[str, Tensor]) -> dict[str, Tensor]:
    if weights and all(k.startswith(_BACKBONE_PREFIX) for k in weights):
        return {k[len(_BACKBONE_PREFIX):]: v for k, v in weights.items()}
    return weights


def load_backbone_weights(path: str | Path) -> dict[str, Tensor]:
    """The backbone state dict stored at ``path`` (see the module doc), on the CPU."""
    source = Path(path).expanduser()
    if source.is_dir():
        source = _latest_checkpoint(source)
    if not source.is_file():
        raise ValueError(f"gram_anchoring: checkpoint not found: {source}")
    if source.suffix == ".safetensors":
        return _strip_backbone_prefix(load_file(str(source), device="cpu"))
    try:
        payload = torch.load(source, map_location="cpu", weights_only=True)
    except Exception as exc:
        first_line = str(exc).splitlines()[0] if str(exc) else ""
        raise ValueError(f"gram_anchoring: {source} is neither a .safetensors file nor a readable sslkit checkpoint: "
                         f"{type(exc).__name__}: {first_line}") from exc
    if not isinstance(payload, dict) or payload.get("format") != CHECKPOINT_FORMAT or "teacher" not in payload:
        raise ValueError(f"gram_anchoring: {source} is not an sslkit checkpoint (no '{CHECKPOINT_FORMAT}' marker "
                         "with a teacher state)")
    teacher: dict[str, Tensor] = payload["teacher"]
    return {k[len(_BACKBONE_PREFIX):]: v for k, v in teacher.items() if k.startswith(_BACKBONE_PREFIX)}
