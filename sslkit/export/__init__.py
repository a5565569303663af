"""Writing a trained backbone in the formats other libraries load: timm weights, a Hugging Face
``transformers`` folder, or a self-contained torch program. Every writer reads its output back and
checks that each tensor was written (names, shapes, dtypes, values)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sslkit.components import Backbone
from sslkit.errors import SSLKitError
from sslkit.export.hf_folder import write_transformers
from sslkit.export.program import write_program
from sslkit.export.timm_file import write_timm

FORMATS = ("timm", "transformers", "torchscript")


def export_backbone(backbone: Backbone, fmt: str, out: Path, metadata: dict[str, str], image_size: int,
                    in_chans: int = 3) -> dict[str, Any]:
    """Write ``backbone`` as ``fmt`` (one of :data:`FORMATS`) to ``out``; a summary of what was written."""
    if fmt == "timm":
        return write_timm(backbone, out, metadata)
    if fmt == "transformers":
        return write_transformers(backbone, out, metadata)
    if fmt != "torchscript":
        raise SSLKitError(f"export: unknown format {fmt!r}; expected one of {', '.join(FORMATS)}")
    return write_program(backbone, out, image_size, in_chans)


__all__ = ["FORMATS", "export_backbone"]
