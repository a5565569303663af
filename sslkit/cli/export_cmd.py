"""``sslkit export``: a trained backbone in the format where users go next (timm weights, a Hugging
Face ``transformers`` folder, or a self-contained torch program), checked by reading it back."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any


def add_parser(sub: Any) -> None:
    p = sub.add_parser("export", help="write a backbone as timm weights, a transformers folder or a torch program",
                       description="Write the teacher's (default) or student's backbone from a checkpoint file or "
                                   "run directory, then read the output back and check every tensor. timm: one "
                                   ".safetensors file in timm's layout (timm.create_model(NAME, pretrained=True, "
                                   "pretrained_cfg_overlay=dict(file=OUT)) loads it; NAME is printed). "
                                   "transformers: a folder that transformers.AutoModel.from_pretrained(OUT) loads "
                                   "(vit backbones: Dinov2Model). torchscript: a torch.export program (.pt2; "
                                   "TorchScript itself is deprecated in torch) that torch.export.load(OUT).module() "
                                   "runs without sslkit, returning (cls, patch tokens).")
    p.add_argument("--checkpoint", required=True, type=Path, help="checkpoint file or run directory")
    p.add_argument("--out", required=True, type=Path,
                   help="output: .safetensors file (timm), folder (transformers) or .pt2 file (torchscript)")
    p.add_argument("--which", choices=("auto", "teacher", "student"), default="auto",
                   help="which backbone: auto (default) is the trained model: the EMA teacher, or the student of a "
                        "distillation run (teacher.mode: frozen)")
    p.add_argument("--format", dest="fmt", choices=("timm", "transformers", "torchscript"), default="timm",
                   help="output format (default: timm)")
    p.add_argument("--image-size", type=int, default=None,
                   help="torchscript: the input side the program takes (default: the recipe's global crop size)")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from sslkit.engine.restore import load_backbone
    from sslkit.export import export_backbone

    backbone, resolved, step = load_backbone(args.checkpoint, args.which)
    image_size = args.image_size or int(resolved.recipe.data.augmentation.get("global_crop_size", 224))
    in_chans = int(getattr(getattr(backbone, "params", None), "in_chans", 3))
    which = args.which if args.which != "auto" else ("student" if resolved.recipe.teacher.mode == "frozen"
                                                     else "teacher")
    metadata = {"sslkit_step": str(step), "sslkit_which": which}
    summary = export_backbone(backbone, args.fmt, args.out, metadata, image_size, in_chans)
    print(json.dumps(summary))
    return 0
