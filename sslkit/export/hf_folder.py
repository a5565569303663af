"""``sslkit export --format transformers``: a folder that Hugging Face ``transformers`` loads with
``Dinov2Model.from_pretrained(FOLDER)`` or ``AutoModel.from_pretrained(FOLDER)`` (``config.json`` and
``model.safetensors``, as ``save_pretrained`` writes them). Writing needs no ``transformers``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from safetensors.torch import load_file, save_file

from sslkit.components import Backbone
from sslkit.errors import SSLKitError
from sslkit.export.verify import check_written

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"


def write_transformers(backbone: Backbone, out: Path, metadata: dict[str, str]) -> dict[str, Any]:
    """Write the folder ``out``, read it back and check it; what was written. Backbones without a
    Hugging Face counterpart (an ``export_transformers()`` method) are refused."""
    export = getattr(backbone, "export_transformers", None)
    if export is None:
        raise SSLKitError(
            f"export --format transformers: backbone {type(backbone).__name__} has no Hugging Face transformers "
            "layout; only the vit backbone maps to transformers' Dinov2Model. Use --format timm or torchscript."
        )
    weights, config = export()
    if out.exists() and not out.is_dir():
        raise SSLKitError(f"export --format transformers: --out {out} is a file; it must be a folder")
    out.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().cpu().contiguous() for k, v in weights.items()}
    meta = {"format": "pt", **metadata}  # transformers reads safetensors files marked "pt"
    save_file(tensors, str(out / WEIGHTS_FILE), metadata=meta)
    (out / CONFIG_FILE).write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
    check_written(tensors, load_file(str(out / WEIGHTS_FILE)), str(out / WEIGHTS_FILE))
    if json.loads((out / CONFIG_FILE).read_text(encoding="utf-8")) != config:
        raise SSLKitError(f"export: {out / CONFIG_FILE} read back differs from the configuration written")
    return {"out": str(out), "tensors": len(tensors), "format": "transformers",
            "architecture": config["architectures"][0], **metadata}
