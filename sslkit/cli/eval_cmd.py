"""``sslkit eval knn|linear``: frozen-feature evaluation of a checkpoint (kNN: DINO, Caron et al. 2021, section 4.1;
linear: DINOv2, Oquab et al. 2023, section 7)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any


def add_parser(sub: Any) -> None:
    p = sub.add_parser("eval", help="kNN or linear-probe evaluation of a checkpoint")
    kinds = p.add_subparsers(dest="protocol", metavar="PROTOCOL", required=True)
    knn = kinds.add_parser("knn", help="weighted kNN on L2-normalised CLS features (T=0.07)")
    linear = kinds.add_parser("linear", help="linear probe on frozen features with a small lr sweep")
    for q in (knn, linear):
        q.add_argument("--checkpoint", required=True, type=Path, help="checkpoint file or run directory")
        q.add_argument("--train-data", required=True, help="labelled image folder or tar archive of one")
        q.add_argument("--test-data", required=True, help="labelled image folder or tar archive of one")
        q.add_argument("--which", choices=("auto", "teacher", "student"), default="auto",
                       help="auto: the EMA teacher, or the student of a distillation run")
        q.add_argument("--image-size", type=int, help="evaluation size (default: the run's global crop size)")
        q.add_argument("--crop-fraction", type=float,
                       help="centre-crop fraction (default: the run's eval.crop_fraction)")
        q.add_argument("--batch-size", type=int, default=256)
        q.add_argument("--num-workers", type=int, default=2)
        q.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
        q.add_argument("--json", action="store_true", help="end with one JSON line of the results")
    knn.add_argument("--k", type=int, nargs="+", default=[10, 20, 100, 200], help="neighbour counts")
    knn.add_argument("--temperature", type=float, default=0.07)
    linear.add_argument("--patch-mean", action="store_true", help="concatenate CLS and the mean patch token")
    linear.add_argument("--lrs", type=float, nargs="+", help="learning rates of the sweep")
    knn.set_defaults(run=run_knn)
    linear.set_defaults(run=run_linear)


def _features(args: argparse.Namespace, with_patch_mean: bool = False) -> tuple[Any, ...]:
    from sslkit.data.eval_loader import build_eval_loader
    from sslkit.data.resolve import dataset_from_path
    from sslkit.engine.evaluation import check_labelled, eval_geometry
    from sslkit.engine.restore import load_backbone
    from sslkit.engine.strategy import pick_device
    from sslkit.eval.features import extract_features
    from sslkit.monitoring.progress import Progress

    backbone, resolved, step = load_backbone(args.checkpoint, args.which)
    device = pick_device(args.device, 0)
    backbone.to(device)
    size, mean, std = eval_geometry(resolved)
    size = args.image_size or size
    crop_fraction = args.crop_fraction or resolved.recipe.eval.crop_fraction
    out = []
    for name, path in (("train", args.train_data), ("test", args.test_data)):
        dataset = dataset_from_path(path)
        check_labelled(dataset, f"--{name}-data {path}")
        loader = build_eval_loader(dataset, image_size=size, batch_size=args.batch_size,
                                   num_workers=args.num_workers, mean=mean, std=std, crop_fraction=crop_fraction)
        progress = Progress(len(loader), stream=sys.stderr, desc=f"{name} features")
        out.append(extract_features(backbone, loader, device=device, with_patch_mean=with_patch_mean,
                                    progress=progress.update))
        progress.close()
        print(f"{name}: {len(dataset)} images from {path}", file=sys.stderr)
    return out[0], out[1], step


def run_knn(args: argparse.Namespace) -> int:
    from sslkit.eval.knn import knn_classify

    (train_x, train_y), (test_x, test_y), step = _features(args)
    results = knn_classify(train_x, train_y, test_x, test_y, ks=tuple(args.k), temperature=args.temperature)
    for k, r in results.items():
        print(f"k={k:<4d} top-1 {r['top1']:6.2f}%  top-5 {r['top5']:6.2f}%")
    if args.json:
        main_k = 20 if 20 in results else args.k[0]
        summary = {"top1": results[main_k]["top1"], "top5": results[main_k]["top5"], "k": main_k, "step": step,
                   "results": {str(k): r for k, r in results.items()}}
        print(json.dumps(summary))
    return 0


def run_linear(args: argparse.Namespace) -> int:
    from sslkit.eval.linear import DEFAULT_LRS, linear_probe

    (train_x, train_y), (test_x, test_y), step = _features(args, with_patch_mean=args.patch_mean)
    result = linear_probe(train_x, train_y, test_x, test_y, lrs=tuple(args.lrs) if args.lrs else DEFAULT_LRS)
    print(f"linear probe: best lr {result.best_lr:g} (val top-1 {result.val_top1:.2f}%), "
          f"test top-1 {result.test_top1:.2f}%, top-5 {result.test_top5:.2f}%")
    if args.json:
        print(json.dumps({"top1": result.test_top1, "top5": result.test_top5, "best_lr": result.best_lr,
                          "val_top1": result.val_top1, "step": step,
                          "per_lr": {str(k): v for k, v in result.per_lr.items()}}))
    return 0



