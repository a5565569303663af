"""``sslkit export --format torchscript``: the backbone as a self-contained program file that runs
without sslkit (only ``torch``), returning ``(cls [B, D], patch tokens [B, N, D])``.

The installed torch deprecates TorchScript (``torch.jit.save`` / ``load`` warn "switch to
torch.export"), so the format behind this flag is ``torch.export``'s ExportedProgram (``.pt2``):
``torch.export.load(PATH).module()(images)``. The batch size is dynamic; the image size is the one
exported (``--image-size``), since the position-embedding resampling is resolved while exporting.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from sslkit.components import Backbone
from sslkit.errors import SSLKitError
from sslkit.export.verify import check_written


class BackboneProgram(nn.Module):
    """``images [B, C, H, W]`` -> ``(cls, patches)`` of the wrapped backbone (CLS-only backbones:
    ``patches`` is an empty ``[B, 0, D]``)."""

    def __init__(self, backbone: Backbone) -> None:
        super().__init__()
        self.backbone = backbone

    def forward(self, images: Tensor) -> tuple[Tensor, Tensor]:
        out = self.backbone(images)
        patches = out.patches if out.patches is not None else out.cls.new_zeros(out.cls.shape[0], 0, out.cls.shape[1])
        return out.cls, patches


def write_program(backbone: Backbone, out: Path, image_size: int, in_chans: int) -> dict[str, Any]:
    """Export, save ``out`` (``.pt2``), load it back, check its tensors and its outputs; what was written."""
    program = BackboneProgram(backbone).eval()
    example = torch.randn(2, in_chans, image_size, image_size, generator=torch.Generator().manual_seed(0))
    try:
        exported = torch.export.export(program, (example,), dynamic_shapes={"images": {0: torch.export.Dim.DYNAMIC}})
    except Exception as exc:  # torch.export's refusals are many kinds of errors
        raise SSLKitError(f"export --format torchscript: torch.export cannot trace {type(backbone).__name__} at "
                          f"{image_size}x{image_size}: {type(exc).__name__}: {exc}") from None
    out.parent.mkdir(parents=True, exist_ok=True)
    torch.export.save(exported, str(out))
    loaded = torch.export.load(str(out))
    check_written({k: v.detach() for k, v in program.state_dict().items()},
                  {k: v.detach() for k, v in loaded.state_dict.items()}, str(out))
    with torch.no_grad():
        want, got = program(example), loaded.module()(example)
    for name, a, b in zip(("cls", "patches"), want, got, strict=True):
        if a.shape != b.shape or not torch.allclose(a, b, rtol=1e-5, atol=1e-5):
            raise SSLKitError(f"export: the program read back from {out} gives other {name} outputs than the backbone")
    return {"out": str(out), "tensors": len(loaded.state_dict), "format": "torchscript",
            "program": "torch.export ExportedProgram (.pt2)", "image_size": image_size, "in_chans": in_chans}
