"""``sslkit export``: a trained backbone's weights as safetensors, in the ecosystem's layout."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any


def add_parser(sub: Any) -> None:
    p = sub.add_parser("export", help="write a backbone's weights as safetensors (timm layout for ViTs)",
                       description="Write the teacher's (default) or student's backbone weights from a checkpoint "
                                   "file or run directory. ViT backbones are written in timm's layout, so that "
                                   "timm.create_model(NAME, pretrained=True, "
                                   "pretrained_cfg_overlay=dict(file=OUT)) loads them; NAME is printed.")
    p.add_argument("--checkpoint", required=True, type=Path, help="checkpoint file or run directory")
    p.add_argument("--out", required=True, type=Path, help="output .safetensors file")
    p.add_argument("--which", choices=("teacher", "student"), default="teacher", help="which backbone")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from safetensors.torch import save_file

    from sslkit.engine.restore import load_backbone

    backbone, _, step = load_backbone(args.checkpoint, args.which)
    weights, metadata = backbone.export_weights()
    metadata = {**metadata, "sslkit_step": str(step), "sslkit_which": args.which}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in weights.items()}, str(args.out), metadata=metadata)
    print(json.dumps({"out": str(args.out), "tensors": len(weights), **metadata}))
    return 0
