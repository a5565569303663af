"""``sslkit export --format timm``: one ``.safetensors`` file in the layout of the backbone's
``export_weights()`` (timm's ``VisionTransformer`` names for ViTs), with the metadata that says
how to build the timm model that loads it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from safetensors import safe_open
from safetensors.torch import load_file, save_file

from sslkit.components import Backbone
from sslkit.errors import SSLKitError
from sslkit.export.verify import check_written


def write_timm(backbone: Backbone, out: Path, metadata: dict[str, str]) -> dict[str, Any]:
    """Write ``out`` (a ``.safetensors`` file), read it back and check it; what was written."""
    weights, meta = backbone.export_weights()
    meta = {**meta, **metadata}
    tensors = {k: v.detach().cpu().contiguous() for k, v in weights.items()}
    out.parent.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(out), metadata=meta)
    check_written(tensors, load_file(str(out)), str(out))
    with safe_open(str(out), framework="pt") as handle:
        if handle.metadata() != meta:
            raise SSLKitError(f"export: the metadata read back from {out} differs from the metadata written")
    return {"out": str(out), "tensors": len(tensors), **meta}
