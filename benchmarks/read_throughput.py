"""Reading throughput of the same images from a folder, one tar archive and tar shards: images/s.

A subset of CIFAR-10 (every ``len / --images``-th image of ``../shared/data/cifar10/train.tar``,
all classes) is written to a temporary directory three ways: an image folder
(``<class>/<file>.jpg``), one uncompressed tar of that tree (dataset ``tar``) and shards written
by ``sslkit data shard`` (dataset ``shards``, read in its two orders: ``window_shards: 0``, a
uniform permutation, and ``window_shards: 2``). Each is read through the real training loader
(``build_train_loader``: the sampler's order, ``--workers`` worker processes, collation) with
the default augmentation's worker stage, ``kornia_multicrop``'s ``prepare``: decode the JPEG to
RGB and resize it to the 37 px canvas of 32 px global crops. No crops are drawn: the figure is
what the loader delivers; "CPU ms/image" is the CPU time of the main process and the workers
per image delivered, a figure that other load on the machine barely moves. The files were just
written, so they are read from the page cache (warm); each contender runs ``--rounds`` times,
interleaved, and the median is reported.

Run: ``.venv/bin/python benchmarks/read_throughput.py [--images 5000] [--shard-size 500]
[--workers 2] [--batch-size 64] [--rounds 3]``.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import tarfile
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
from bench_hardware import describe

from sslkit.components import BuildContext
from sslkit.data import build_train_loader
from sslkit.data.shard_writer import write_shards
from sslkit.hardware import cpu_info
from sslkit.registry import create
from sslkit_plugins.augmentations.kornia_multicrop import KorniaMultiCrop, KorniaMultiCropParams
from sslkit_plugins.datasets.tar import TarDataset, TarParams

CIFAR_TRAIN = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "cifar10" / "train.tar"


def write_subset(folder: Path, count: int) -> None:
    """Every ``len / count``-th image of CIFAR-10's training archive as ``folder/<class>/<file>.jpg``."""
    source = TarDataset(TarParams(path=str(CIFAR_TRAIN), prefix="train"), BuildContext())
    step = max(1, len(source) // count)
    for i in range(0, step * count, step):
        target = folder / source.names[i]
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(source.read_bytes(i))


def write_one_tar(folder: Path, path: Path) -> None:
    with tarfile.open(path, "w") as archive:
        for file in sorted(folder.rglob("*.jpg")):
            archive.add(file, arcname=str(file.relative_to(folder)))


def cpu_seconds() -> float:
    """CPU time of this process and of its finished children (the loader workers, once shut down)."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def images_per_second(dataset: Any, args: argparse.Namespace) -> tuple[float, float]:
    """Images/s delivered by the training loader over one epoch, after two warm-up batches, and the CPU
    milliseconds per image of all processes over the whole run (barely moved by other load)."""
    cpu_start = cpu_seconds()
    augmentation = KorniaMultiCrop(KorniaMultiCropParams(global_crop_size=32, local_crop_size=16), BuildContext())
    loader = build_train_loader(dataset, augmentation, global_batch_size=args.batch_size, rank=0, world_size=1,
                                seed=0, start_step=0, num_workers=args.workers, device="cpu")
    steps = len(dataset) // args.batch_size
    iterator = iter(loader)
    for step in range(steps + 2):
        if step == 2:
            start = time.perf_counter()
        next(iterator)
    elapsed = time.perf_counter() - start
    iterator.close()  # joins the workers, so that their CPU time is counted
    return steps * args.batch_size / elapsed, (cpu_seconds() - cpu_start) * 1e3 / ((steps + 2) * args.batch_size)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=5000)
    parser.add_argument("--shard-size", type=int, default=500)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    if not CIFAR_TRAIN.is_file():
        raise SystemExit(f"needs {CIFAR_TRAIN} (see ../shared/data/cifar10/README.md)")
    torch.set_num_threads(1)
    info = cpu_info()
    print(describe(1))
    print(f"cpu_info: {info['cpu_model']}, flags {', '.join(n for n, on in info['flags'].items() if on)}")
    print(f"{args.images} CIFAR-10 JPEGs (32 px), batch {args.batch_size}, {args.workers} loader workers, "
          f"kornia_multicrop prepare (decode + resize to 37 px), page cache warm, median of {args.rounds} rounds")
    with tempfile.TemporaryDirectory(prefix="sslkit-read-") as tmp:
        root = Path(tmp)
        write_subset(root / "folder", args.images)
        write_one_tar(root / "folder", root / "one.tar")
        summary = write_shards(str(root / "folder"), str(root / "shards"), shard_size=args.shard_size)
        print(f"shards: {len(summary.shards)} x {args.shard_size} ({summary.pattern})")
        contenders = {
            "image_folder": lambda: create("dataset", "image_folder", root=str(root / "folder")),
            "tar (one archive)": lambda: create("dataset", "tar", path=str(root / "one.tar")),
            "shards, window_shards=0": lambda: create("dataset", "shards", path=summary.pattern),
            "shards, window_shards=2": lambda: create("dataset", "shards", path=summary.pattern, window_shards=2),
        }
        figures: dict[str, list[float]] = {name: [] for name in contenders}
        cpu_ms: dict[str, list[float]] = {name: [] for name in contenders}
        opened: dict[str, float] = {}
        for _ in range(args.rounds):
            for name, build in contenders.items():
                start = time.perf_counter()
                dataset = build()
                opened.setdefault(name, time.perf_counter() - start)  # first round: no cached tar index
                assert len(dataset) == args.images
                rate, ms = images_per_second(dataset, args)
                figures[name].append(rate)
                cpu_ms[name].append(ms)
    print("\n| source | images/s (median) | rounds | CPU ms/image (median) | dataset opened in (first round) |\n"
          "| --- | ---: | --- | ---: | ---: |")
    for name, values in figures.items():
        rounds = ", ".join(f"{v:,.0f}" for v in values)
        print(f"| {name} | {statistics.median(values):,.0f} | {rounds} | {statistics.median(cpu_ms[name]):.2f} | "
              f"{opened[name] * 1e3:.0f} ms |")
    print(f"load average at the end {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
