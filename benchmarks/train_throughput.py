"""Training throughput: sslkit's engine against a DINOv2 loop built from lightly's parts, side by side.

Both contenders train the same CIFAR-scale DINOv2 configuration (``recipes/cifar10/bench_vit_tiny.yaml``:
ViT-tiny 192/12/3, patch 4, 2 global 32 px + 8 local 16 px crops, batch 64, DINO + iBOT + KoLeo,
block masking) on ``../shared/data/cifar10/train.tar`` (read in place with ``tarfile``) for
``--warmup`` untimed then ``--steps`` timed optimizer steps, data loading and augmentation
included, with the same CPU threads, loader workers, OpenMP wait policy and precision
(``--precision``; default: bf16 where it is native, i.e. a CPU with avx512_bf16 / amx_bf16 or a
bf16 GPU, fp32 elsewhere). Each run is a fresh subprocess so that memory peaks do not mix; the
contenders' runs are interleaved (``--repeats``). ``--process-steps 4 20`` times whole processes
of 4 and 20 steps from outside instead and reports the difference, so that start-up cancels.

* ``sslkit``: :class:`sslkit.engine.trainer.Trainer` built from the recipe (resolved once, here,
  for every contender), the engine's train loader (``tar`` dataset, ``kornia_multicrop`` on the
  batch), ``Trainer.train_step`` per step.
* ``lightly peer``: :mod:`lightly_peer`, lightly's DINOv2 example with the recipe's sizes (timm
  ViT in ``MaskedVisionTransformerTIMM``, ``DINOv2ProjectionHead``, lightly's losses and block
  masks, torchvision ``DINOTransform`` per image in the loader workers, default AdamW), under
  bf16 autocast when the precision is bf16 (lightly's example itself runs fp32).

The header names the hardware (CPU model, avx2 / avx512f / avx512_bf16 / amx_bf16, torch
version, threads, load average). Printed per contender: images/s (median over repeats), CPU
time per image (main process and loader workers), peak RSS of the training process
(``getrusage``), private memory of its loader workers, CUDA peak on a GPU; then the ratios
sslkit / peer: images/s, images per CPU second (``x peer cpu``: the peer's CPU time per image over
the contender's, the figure that other jobs on the cores move least) and peak memory.
``--variant NAME=KEY=VALUE,...`` adds sslkit contenders with recipe overrides (e.g.
``sdpa=model.backbone.attention=sdpa``); ``--profile`` prints a torch.profiler table of one extra step per contender.

Run (about 10 minutes on 2 CPU cores)::

    .venv/bin/python benchmarks/train_throughput.py --variant sdpa=model.backbone.attention=sdpa
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

from bench_hardware import cpu_isa_env, default_precision, describe
from bench_meter import time_steps
from lightly_peer import PeerConfig, PeerLoop, config_from_recipe

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_RECIPE = ROOT / "recipes" / "cifar10" / "bench_vit_tiny.yaml"
DEFAULT_TAR = ROOT.parent / "shared" / "data" / "cifar10" / "train.tar"
RESULT_TAG = "RESULT "


# -- the contenders ------------------------------------------------------------------------------
def run_sslkit(spec: dict[str, Any]) -> dict[str, Any]:
    """Time ``Trainer.train_step`` over the engine's own train loader."""

    from sslkit.data.loader import build_train_loader
    from sslkit.engine.trainer import Trainer
    from sslkit.recipe import load_resolved

    resolved = load_resolved(spec["recipe_data"], spec["label"])  # resolved once by the parent
    with tempfile.TemporaryDirectory(prefix="sslkit-bench-") as out:
        trainer = Trainer(resolved, Path(out))
        r = trainer.recipe
        loader = build_train_loader(
            trainer.parts.dataset,
            trainer.parts.augmentation,
            global_batch_size=trainer.global_batch,
            rank=trainer.info.rank,
            world_size=trainer.info.world_size,
            seed=r.run.seed,
            start_step=0,
            num_workers=r.data.num_workers,
            device=trainer.info.device,
            max_bad_fraction=r.data.max_bad_fraction,
        )
        iterator = iter(loader)

        def step_loss(step: int) -> Any:
            terms = trainer.train_step(step, next(iterator))
            return terms["total"] if terms else None

        return time_steps(spec, step_loss, trainer.global_batch, trainer.info.device)


def run_peer(spec: dict[str, Any]) -> dict[str, Any]:
    """Time the lightly-built loop of :mod:`lightly_peer`."""
    import torch

    cfg = PeerConfig(**spec["peer"])
    device = torch.device(spec["device"])
    loop = PeerLoop(cfg, device)
    iterator = loop.loader()
    return time_steps(spec, lambda step: loop.step(step, next(iterator)), cfg.batch_size, device)


def child_main(spec: dict[str, Any]) -> None:
    import torch

    torch.set_num_threads(spec["threads"])
    torch.manual_seed(0)
    result = run_sslkit(spec) if spec["kind"] == "sslkit" else run_peer(spec)
    print(RESULT_TAG + json.dumps(result), flush=True)


# -- the orchestrator ----------------------------------------------------------------------------
def run_child(spec: dict[str, Any], threads: int, wait_policy: str, mmap_threshold: int | None) -> dict[str, Any]:
    """Run one contender in a fresh process; its result plus the process's whole wall and CPU time
    (``process_seconds``, ``process_cpu_seconds``: start-up, model building and loader included)."""
    env = {
        **os.environ,
        "OMP_NUM_THREADS": str(threads),
        "MKL_NUM_THREADS": str(threads),
        "OMP_WAIT_POLICY": wait_policy,
        "PYTHONWARNINGS": "ignore",
    }
    if mmap_threshold is not None:
        env["MALLOC_MMAP_THRESHOLD_"] = str(mmap_threshold)
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child", json.dumps(spec)]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
    for line in proc.stdout.splitlines():
        if line.startswith(RESULT_TAG):
            return {**json.loads(line[len(RESULT_TAG) :]), "process_seconds": wall, "process_cpu_seconds": cpu}
    sys.stderr.write(proc.stdout[-4000:] + proc.stderr[-8000:])
    raise SystemExit(f"contender {spec['label']} failed (exit {proc.returncode})")


def run_process_pair(spec: dict[str, Any], steps: tuple[int, int], images_per_step: int, threads: int,
                     wait_policy: str, mmap_threshold: int | None) -> dict[str, Any]:
    """Time whole processes of ``steps[0]`` and ``steps[1]`` optimizer steps (no warm-up) from outside:
    images/s and CPU ms/image of the difference, so that start-up and the first steps cancel."""
    short, long = (run_child({**spec, "warmup": 0, "steps": n, "profile": False}, threads, wait_policy,
                             mmap_threshold) for n in steps)
    images = (steps[1] - steps[0]) * images_per_step
    wall = long["process_seconds"] - short["process_seconds"]
    cpu = long["process_cpu_seconds"] - short["process_cpu_seconds"]
    return {**long, "images_per_s": images / wall, "cpu_ms_per_image": 1000 * cpu / images,
            "startup_seconds": short["process_seconds"] - steps[0] * images_per_step * wall / images}


def _summary(label: str, runs: list[dict[str, Any]]) -> dict[str, Any]:
    keys = ("images_per_s", "cpu_ms_per_image", "host_peak_mib", "workers_private_mib", "cuda_peak_mib")
    out: dict[str, Any] = {"label": label, "runs": len(runs)}
    for key in keys:
        values = [run[key] for run in runs if key in run]
        if values:
            pick = max if key.endswith("_mib") else statistics.median
            out[key] = pick(values)
    out["images_per_s_all"] = [round(run["images_per_s"], 2) for run in runs]
    out["final_loss"] = runs[-1]["final_loss"]
    return out


def _print_table(summaries: list[dict[str, Any]], peer: dict[str, Any] | None) -> None:
    header = f"{'contender':<26}{'img/s':>9}{'cpu ms/img':>12}{'host peak MiB':>15}{'workers MiB':>13}"
    cuda = any("cuda_peak_mib" in s for s in summaries)
    header += f"{'cuda peak MiB':>15}" if cuda else ""
    header += f"{'x peer img/s':>14}{'x peer cpu':>12}{'x peer mem':>12}  runs (img/s)"
    print(header)
    for s in summaries:
        row = (
            f"{s['label']:<26}{s['images_per_s']:>9.2f}{s['cpu_ms_per_image']:>12.1f}{s['host_peak_mib']:>15.0f}"
            f"{s['workers_private_mib']:>13.0f}"
        )
        row += f"{s.get('cuda_peak_mib', 0):>15.0f}" if cuda else ""
        if peer is not None:
            mem_key = "cuda_peak_mib" if cuda else "host_peak_mib"
            row += (f"{s['images_per_s'] / peer['images_per_s']:>14.2f}"
                    f"{peer['cpu_ms_per_image'] / s['cpu_ms_per_image']:>12.2f}{s[mem_key] / peer[mem_key]:>12.2f}")
        else:
            row += f"{'':>14}{'':>12}{'':>12}"
        print(row + f"  {s['images_per_s_all']}")


def _parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--recipe", default=str(DEFAULT_RECIPE), help="sslkit recipe both contenders train")
    parser.add_argument("--data", default=str(DEFAULT_TAR), help="CIFAR-10 train.tar (train/<class>/<n>.jpg)")
    parser.add_argument("--warmup", type=int, default=1, help="untimed steps per run (default 1)")
    parser.add_argument("--steps", type=int, default=4, help="timed steps per run (default 4)")
    parser.add_argument(
        "--process-steps",
        nargs=2,
        type=int,
        metavar=("SHORT", "LONG"),
        help="instead of timing steps inside the process, time whole processes of SHORT and LONG steps from "
        "outside (e.g. 4 20) and report the difference, so that start-up cancels",
    )
    parser.add_argument("--repeats", type=int, default=2, help="runs per contender, interleaved (default 2)")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads per contender (default 2)")
    parser.add_argument("--workers", type=int, default=2, help="data-loader workers per contender (default 2)")
    parser.add_argument("--device", default="cpu", help="cpu or cuda (default cpu)")
    parser.add_argument(
        "--precision",
        choices=("auto", "fp32", "bf16"),
        default="auto",
        help="precision of EVERY contender (sslkit's run.precision and the peer's autocast); auto (default): "
        "bf16 on a CPU with native bf16 (avx512_bf16 / amx) or a bf16 GPU, else fp32",
    )
    parser.add_argument(
        "--set",
        nargs="*",
        default=[],
        metavar="KEY=VALUE",
        help="recipe overrides for every contender (the peer follows them)",
    )
    parser.add_argument(
        "--variant",
        nargs="*",
        default=[],
        metavar="NAME=KEY=VALUE,...",
        help="extra sslkit contenders with their own overrides, e.g. sdpa=model.backbone.attention=sdpa",
    )
    parser.add_argument(
        "--omp-wait-policy",
        default=os.environ.get("OMP_WAIT_POLICY", "PASSIVE"),
        choices=("PASSIVE", "ACTIVE"),
        help="OpenMP wait policy of every contender (default PASSIVE: idle threads sleep instead of spinning, "
        "which matters when threads + loader workers outnumber the cores)",
    )
    parser.add_argument(
        "--malloc-mmap-threshold",
        type=int,
        metavar="BYTES",
        help="fixed glibc mmap threshold for every contender (e.g. 65536): freed tensors go back to the OS, so "
        "peak RSS measures live memory rather than heap fragmentation; slows every step, so use it for memory "
        "figures only",
    )
    parser.add_argument(
        "--cpu-isa",
        choices=("native", "avx2"),
        default="native",
        help="instruction set of every contender's kernels (PyTorch, MKL, oneDNN): native (default) or avx2, "
        "which measures an AVX2-only CPU's code paths on an AVX512 machine",
    )
    parser.add_argument("--no-peer", action="store_true", help="only the sslkit contenders")
    parser.add_argument("--no-default", action="store_true", help="skip the plain sslkit contender")
    parser.add_argument("--profile", action="store_true", help="profile one extra step (first repeat)")
    parser.add_argument("--json", help="also write the summaries to this file")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    return parser.parse_args()


def _contenders(args: argparse.Namespace, precision: str) -> tuple[Any, list[dict[str, Any]]]:
    """The resolved base recipe and one spec per contender, all at ``precision``."""
    from sslkit.recipe import load_recipe

    base = [
        f"data.dataset.path={args.data}",
        f"data.num_workers={args.workers}",
        f"run.device={args.device}",
        f"run.precision={precision}",
        *args.set,
    ]
    resolved = load_recipe(args.recipe, base)
    common = {
        "recipe_data": resolved.data,
        "warmup": args.warmup,
        "steps": args.steps,
        "threads": args.threads,
        "device": args.device,
        "profile": args.profile,
    }
    contenders: list[dict[str, Any]] = []
    if not args.no_default:
        contenders.append({**common, "kind": "sslkit", "label": "sslkit"})
    for variant in args.variant:
        name, _, overrides = variant.partition("=")
        extra = [o for o in overrides.split(",") if o]
        variant_data = load_recipe(args.recipe, base + extra).data
        contenders.append({**common, "kind": "sslkit", "label": f"sslkit:{name}", "recipe_data": variant_data})
    if not args.no_peer:
        peer = asdict(config_from_recipe(resolved, args.data, precision))
        contenders.append({**common, "kind": "peer", "label": f"lightly peer {precision}", "peer": peer})
    return resolved, contenders


def main() -> None:
    args = _parse_args()
    if args.child:
        child_main(json.loads(args.child))
        return
    if not Path(args.data).is_file():
        raise SystemExit(f"no CIFAR-10 archive at {args.data}; pass --data PATH")
    os.environ.update(cpu_isa_env(args.cpu_isa))  # inherited by every contender's process
    precision = default_precision(args.device) if args.precision == "auto" else args.precision
    resolved, contenders = _contenders(args, precision)
    r, d = resolved.recipe, resolved.data
    sizes = asdict(config_from_recipe(resolved, args.data, precision))
    aug = d["data"]["augmentation"]
    timing = (f"whole processes of {args.process_steps[0]} and {args.process_steps[1]} steps, difference"
              if args.process_steps else f"{args.warmup} warm-up + {args.steps} timed steps")
    print(describe(args.threads))
    print(
        f"model: ViT {sizes['embed_dim']}/{sizes['depth']}/{sizes['num_heads']} patch {sizes['patch_size']}, "
        f"crops {aug['n_global']}x{aug['global_crop_size']}px + {aug['n_local']}x{aug['local_crop_size']}px, "
        f"head {sizes['head_hidden_dim']}-{sizes['head_bottleneck_dim']}-{sizes['dino_prototypes']} "
        f"({'separate' if sizes['separate_ibot_head'] else 'shared'} iBOT head), losses {', '.join(d['losses'])}"
    )
    print(
        f"recipe {args.recipe}: batch {r.data.batch_size}, precision {precision} for every contender"
        f"{' (auto)' if args.precision == 'auto' else ''}, {args.threads} threads, {args.workers} workers, "
        f"OMP_WAIT_POLICY={args.omp_wait_policy}, MALLOC_MMAP_THRESHOLD_={args.malloc_mmap_threshold or 'default'}, "
        f"device {args.device}; {timing}, {args.repeats} repeat(s)",
        flush=True,
    )
    runs: dict[str, list[dict[str, Any]]] = {c["label"]: [] for c in contenders}
    start = time.perf_counter()
    child = (args.threads, args.omp_wait_policy, args.malloc_mmap_threshold)
    for repeat in range(args.repeats):
        order = contenders if repeat % 2 == 0 else contenders[::-1]
        for spec in order:
            spec = {**spec, "profile": args.profile and repeat == 0}
            if args.process_steps:
                result = run_process_pair(spec, tuple(args.process_steps), r.data.batch_size, *child)
            else:
                result = run_child(spec, *child)
            runs[spec["label"]].append(result)
            print(
                f"  [{time.perf_counter() - start:6.0f}s] {spec['label']}: {result['images_per_s']:.2f} img/s, "
                f"{result['cpu_ms_per_image']:.0f} cpu ms/img, peak {result['host_peak_mib']:.0f} MiB, "
                f"loss {result['final_loss']:.3f}, load average {os.getloadavg()[0]:.2f}"
                + (f", start-up {result['startup_seconds']:.0f} s" if "startup_seconds" in result else ""),
                flush=True,
            )
            if "profile" in result:
                print(f"\n  profile of one step, {spec['label']}:\n{result['profile']}", flush=True)
    summaries = [_summary(label, results) for label, results in runs.items()]
    peers = [s for s in summaries if s["label"].startswith("lightly peer")]
    print()
    _print_table(summaries, peers[0] if peers else None)
    mem_key = "cuda_peak_mib" if args.device.startswith("cuda") else "host_peak_mib"
    for peer_summary in peers:
        for s in summaries:
            if not s["label"].startswith("lightly peer"):
                speed = s["images_per_s"] / peer_summary["images_per_s"]
                memory = s[mem_key] / peer_summary[mem_key]
                cpu = peer_summary["cpu_ms_per_image"] / s["cpu_ms_per_image"]
                print(f"{s['label']} / {peer_summary['label']}: images/s x{speed:.2f}, images per CPU second "
                      f"x{cpu:.2f} (the figure other load on the cores moves least), peak memory x{memory:.2f}")
    print(describe(args.threads))
    if args.json:
        Path(args.json).write_text(json.dumps({"hardware": describe(args.threads), "precision": precision,
                                               "summaries": summaries}, indent=2))


if __name__ == "__main__":
    main()
