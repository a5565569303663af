"""The frozen teacher of distillation (DINOv2, Oquab et al. 2023, section 5: the smaller models are
distilled from ViT-g with the same training loop, the teacher frozen): built from its own backbone and
head components and loaded from pretrained weights, with a report of what was loaded.

The backbone reads any ``init_from`` source (:mod:`sslkit.weights`); the heads come from an sslkit
run directory or checkpoint (its teacher's heads, matched by name). Heads of another width than the
student's are fine: each head maps the teacher's width to the same output size as the student's head.
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch
from torch import Tensor, nn

from sslkit.components import Backbone
from sslkit.engine.checkpoint import load_checkpoint, resolve_checkpoint
from sslkit.errors import SSLKitError
from sslkit.weights import InitReport, initialise

log = logging.getLogger("sslkit")


def _checkpoint_heads(source: Path) -> dict[str, dict[str, Tensor]]:
    """The teacher heads of an sslkit run directory or checkpoint, by head name."""
    payload = load_checkpoint(resolve_checkpoint(source) if source.is_dir() else source)
    heads: dict[str, dict[str, Tensor]] = {}
    for key, value in payload["teacher"].items():
        if key.startswith("heads."):
            name, _, rest = key[len("heads."):].partition(".")
            heads.setdefault(name, {})[rest] = value
    return heads


def load_heads(heads: nn.ModuleDict, source: Path, needed: tuple[str, ...]) -> list[str]:
    """Load the teacher's heads named in ``needed`` from the sslkit checkpoint ``source`` (all tensors,
    same shapes, or a clear error); return their names."""
    found = _checkpoint_heads(source)
    for name in needed:
        if name not in found:
            raise SSLKitError(f"teacher.init_from {source}: the checkpoint's teacher has no head {name!r} "
                              f"(it has {', '.join(sorted(found)) or 'none'}); a frozen teacher's heads must be "
                              "pretrained")
        own = heads[name].state_dict()
        wrong = [f"{k} {tuple(found[name][k].shape)} vs {tuple(v.shape)}" for k, v in own.items()
                 if k in found[name] and found[name][k].shape != v.shape]
        missing = sorted(set(own) - set(found[name]))
        if wrong or missing:
            raise SSLKitError(f"teacher.init_from {source}: head {name!r} does not match the checkpoint's "
                              f"(shapes checkpoint vs recipe: {'; '.join(wrong) or 'equal'}; missing: "
                              f"{', '.join(missing) or 'none'}); give teacher.heads.{name} the checkpoint's "
                              "head parameters")
        with torch.no_grad():
            heads[name].load_state_dict({k: found[name][k] for k in own})
    return list(needed)


def load_frozen_teacher(backbone: Backbone, heads: nn.ModuleDict, source: str, min_fraction: float,
                        needed_heads: tuple[str, ...]) -> InitReport:
    """Load the frozen teacher's backbone (report, ``min_fraction`` enforced) and the heads its requests
    apply (``needed_heads``; they must come from an sslkit checkpoint)."""
    report = initialise(backbone, source, min_fraction, log=log.info)
    if needed_heads:
        if report.kind != "sslkit":
            raise SSLKitError(f"teacher.init_from {source}: the teacher's requests apply the heads "
                              f"{', '.join(needed_heads)}, but a {report.kind} source holds a backbone only; "
                              "use an sslkit run directory or checkpoint that has those heads")
        load_heads(heads, Path(source).expanduser(), needed_heads)
        log.info("teacher heads loaded from %s: %s", source, ", ".join(needed_heads))
    return report
