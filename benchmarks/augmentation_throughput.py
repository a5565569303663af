"""Throughput of the two multi-crop pipelines fed by the training loader: images/s fully augmented.

An image counts once all its crops (``n_global`` global + ``--n-local`` local, normalised,
crop-major on ``--device``) exist. Both pipelines run behind ``build_train_loader`` with the same
``--workers`` loader processes and the same ``--threads`` in the main process:

- ``torchvision_multicrop``: the workers decode and augment every crop (PIL / torchvision), the
  main process only reorders and normalises;
- ``kornia_multicrop``: the workers decode and resize to the canvas, the main process draws the
  crops in batches on ``--device``.

Scales: CIFAR (32 px images -> 32 px global, 16 px local crops; the CIFAR-10 training archive
``../shared/data/cifar10/train.tar``, or the synthetic dataset when absent) and ImageNet
(256 px JPEG images written to a temporary folder, upscaled from CIFAR-10 or synthetic ->
224 px global, 96 px local crops).

OpenMP threads of the main process wait passively (``OMP_WAIT_POLICY=PASSIVE`` unless the
environment sets it): with the default active wait, idle OpenMP threads spin and take the CPU
from the loader workers whenever the cores are oversubscribed (main-process threads + workers >
cores, or other load on the machine); see docs/performance.md.

Run: ``.venv/bin/python benchmarks/augmentation_throughput.py [--device cpu] [--workers 2]
[--threads 2] [--batch-size 64] [--steps 8] [--scales cifar imagenet]``.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # read when torch loads OpenMP: before the imports below

import argparse
import gc
import resource
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
from bench_hardware import describe
from PIL import Image

from sslkit.components import BuildContext
from sslkit.data import build_train_loader
from sslkit_plugins.augmentations.kornia_multicrop import KorniaMultiCrop, KorniaMultiCropParams
from sslkit_plugins.augmentations.params import MultiCropParams
from sslkit_plugins.augmentations.torchvision_multicrop import TorchvisionMultiCrop
from sslkit_plugins.datasets.image_folder import ImageFolderDataset, ImageFolderParams
from sslkit_plugins.datasets.synthetic import SyntheticDataset, SyntheticParams
from sslkit_plugins.datasets.tar import TarDataset, TarParams

CIFAR_TRAIN = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "cifar10" / "train.tar"
SCALES = {"cifar": (32, 16), "imagenet": (224, 96)}


def small_images() -> Any:
    """32 px images: CIFAR-10 when available, else the synthetic dataset."""
    if CIFAR_TRAIN.is_file():
        return TarDataset(TarParams(path=str(CIFAR_TRAIN), prefix="train"), BuildContext())
    return SyntheticDataset(SyntheticParams(size=50_000), BuildContext())


def write_large_jpegs(folder: Path, count: int, size: int = 256) -> ImageFolderDataset:
    """``count`` JPEG files of ``size`` px (bicubic upscales of 32 px images) in 10 class folders."""
    source = small_images()
    step = max(1, len(source) // count)
    for i in range(count):
        image, label = source[i * step]
        target = folder / f"class_{max(label, 0)}" / f"{i:05d}.jpg"
        target.parent.mkdir(parents=True, exist_ok=True)
        image.resize((size, size), Image.Resampling.BICUBIC).save(target, quality=90)
    return ImageFolderDataset(ImageFolderParams(root=str(folder)), BuildContext())


def cpu_seconds() -> float:
    """CPU time of this process and of its finished children (the loader workers, once shut down)."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def throughput(dataset: Any, augmentation: Any, args: argparse.Namespace) -> tuple[float, float]:
    """Images per second fully augmented (after two warm-up steps), and CPU milliseconds per image
    over all processes and all steps (a figure that other load on the machine barely affects)."""
    device = torch.device(args.device)
    cpu_start = cpu_seconds()
    loader = build_train_loader(
        dataset,
        augmentation,
        global_batch_size=args.batch_size,
        rank=0,
        world_size=1,
        seed=0,
        start_step=0,
        num_workers=args.workers,
        device=device,
    )
    batches = iter(loader)
    for step in range(args.steps + 2):
        if step == 2:
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            start = time.perf_counter()
        batch = next(batches)
        crops = augmentation(batch.data, batch.sample_seeds, device)
        if crops.local_crops is not None:
            crops.local_crops.view(-1)[0].item()  # wait for the device
        crops.global_crops.view(-1)[0].item()
    elapsed = time.perf_counter() - start
    del batches, loader
    gc.collect()  # shuts the workers down, so that their CPU time is counted
    cpu_ms = (cpu_seconds() - cpu_start) * 1e3 / ((args.steps + 2) * args.batch_size)
    return args.steps * args.batch_size / elapsed, cpu_ms


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--workers", type=int, default=2, help="loader worker processes of both pipelines")
    parser.add_argument("--threads", type=int, default=2, help="torch threads of the main process")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--steps", type=int, default=8, help="timed steps (after 2 warm-up steps)")
    parser.add_argument("--n-local", type=int, default=8)
    parser.add_argument("--scales", nargs="+", default=list(SCALES), choices=list(SCALES))
    parser.add_argument("--large-images", type=int, default=1024, help="256 px JPEGs written for the ImageNet scale")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(describe(args.threads))
    print(
        f"device {args.device}, {args.workers} loader workers, {args.threads} main-process threads "
        f"(OMP_WAIT_POLICY={os.environ['OMP_WAIT_POLICY']}), batch {args.batch_size}, {args.steps} timed steps, "
        f"2 global + {args.n_local} local crops, load average {os.getloadavg()[0]:.1f}"
    )
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for scale in args.scales:
            global_size, local_size = SCALES[scale]
            dataset = small_images() if scale == "cifar" else write_large_jpegs(Path(tmp), args.large_images)
            recipe = {"global_crop_size": global_size, "local_crop_size": local_size, "n_local": args.n_local}
            torchvision_aug = TorchvisionMultiCrop(MultiCropParams(**recipe), BuildContext())
            kornia_aug = KorniaMultiCrop(KorniaMultiCropParams(**recipe), BuildContext())
            results = {
                "torchvision_multicrop": throughput(dataset, torchvision_aug, args),
                "kornia_multicrop": throughput(dataset, kornia_aug, args),
            }
            rows.append((scale, global_size, local_size, results))
    print(
        "\n| scale | crops (global / local px) | torchvision_multicrop img/s (CPU ms/img) "
        "| kornia_multicrop img/s (CPU ms/img) | speed-up |"
    )
    print("| --- | --- | ---: | ---: | ---: |")
    for scale, global_size, local_size, results in rows:
        (tv, tv_cpu), (ko, ko_cpu) = results["torchvision_multicrop"], results["kornia_multicrop"]
        print(
            f"| {scale} | {global_size} / {local_size} | {tv:.0f} ({tv_cpu:.1f}) | {ko:.0f} ({ko_cpu:.1f}) "
            f"| {ko / tv:.2f}x |"
        )


if __name__ == "__main__":
    main()
