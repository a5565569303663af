"""The sections of :mod:`gpu_check`: each measures one thing and returns ``(summary, details)``.

``summary`` is the one-line result of the report's closing table; ``details`` (a flat dict of
JSON-serialisable values) goes to the section's part of the report. Every section takes the
:class:`~gpu_check_forms.Form` (the GPU or the tiny CPU sizes), the scratch directory and the
shared ``facts`` dict (the measured matmul peak is put there by ``environment`` for ``throughput``).
"""

from __future__ import annotations

import argparse
import gc
import json
import math
import os
import platform
import signal
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import torch
from gpu_check_forms import DATASHEET_BF16_TFLOPS, ROOT, Form

Result = tuple[str, dict[str, Any]]


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _sig(value: float) -> float:
    """``value`` to 4 significant digits (tiny CPU figures and H200 figures alike stay readable)."""
    return float(f"{value:.4g}")


def _cpu_model() -> str:
    try:
        lines = Path("/proc/cpuinfo").read_text(encoding="utf-8").splitlines()
    except OSError:
        return platform.machine()
    return next((line.split(":", 1)[1].strip() for line in lines if line.startswith("model name")), platform.machine())


def _free_memory() -> None:
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()


def run_command(command: list[str]) -> tuple[int, str]:
    """Run ``command`` in the repository root in its own process group; its exit code and output
    (stdout and stderr together). Interrupted (the section's time cap, SIGTERM), the whole group is
    killed, so that no worker of torchrun or pytest is left holding the GPU."""
    process = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                               process_group=0)
    try:
        output, _ = process.communicate()
    except BaseException:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
        raise
    return process.returncode, output


# -- shared: a Trainer timed on prefetched batches ------------------------------------------------
def build_trainer(recipe: Path | str, overrides: list[str], scratch: Path) -> Any:
    from sslkit.engine.trainer import Trainer
    from sslkit.recipe import load_recipe

    return Trainer(load_recipe(recipe, overrides), Path(tempfile.mkdtemp(prefix="run-", dir=scratch)))


def prefetch(trainer: Any, count: int) -> list[Any]:
    """``count`` batches from the run's own train loader (pinned on CUDA); the loader is then shut down."""
    from sslkit.data.loader import build_train_loader

    r = trainer.recipe
    loader = build_train_loader(trainer.parts.dataset, trainer.parts.augmentation,
                                global_batch_size=trainer.global_batch, rank=trainer.info.rank,
                                world_size=trainer.info.world_size, seed=r.run.seed, start_step=0,
                                num_workers=r.data.num_workers, device=trainer.info.device)
    batches = iter(loader)
    kept = [next(batches) for _ in range(count)]
    del batches, loader
    gc.collect()
    return kept


def timed_steps(trainer: Any, batches: list[Any], warmup: int, steps: int) -> dict[str, Any]:
    """``warmup`` then ``steps`` calls of ``Trainer.train_step`` cycling ``batches`` (so data loading is
    excluded; the multi-crop augmentation on the device is included); wall times after a device sync."""
    device = trainer.info.device
    totals: list[torch.Tensor] = []
    warm, start = 0.0, time.perf_counter()
    for step in range(warmup + steps):
        if step == warmup:
            _sync(device)
            warm = time.perf_counter() - start
            start = time.perf_counter()
        terms = trainer.train_step(step, batches[step % len(batches)])
        totals.append(terms["total"] if terms is not None else torch.tensor(float("nan")))
    _sync(device)
    wall = time.perf_counter() - start
    losses = [float(t) for t in totals]
    return {"warmup_steps": warmup, "warmup_s": round(warm, 2), "timed_steps": steps,
            "step_ms": round(1000 * wall / steps, 1), "images_per_s": round(steps * trainer.global_batch / wall, 1),
            "losses": [round(v, 4) for v in losses], "losses_finite": all(math.isfinite(v) for v in losses)}


# -- the sections ---------------------------------------------------------------------------------
def matmul_tflops(device: torch.device, size: int, dtype: torch.dtype, reps: int = 10) -> float:
    """Dense ``size``^3 matrix products per second in TFLOP/s (mean of ``reps`` after 3 warm-ups)."""
    a = torch.randn(size, size, device=device, dtype=dtype)
    b = torch.randn(size, size, device=device, dtype=dtype)
    for _ in range(3):
        a @ b
    _sync(device)
    start = time.perf_counter()
    for _ in range(reps):
        a @ b
    _sync(device)
    return 2 * size**3 * reps / (time.perf_counter() - start) / 1e12


def environment(form: Form, scratch: Path, facts: dict[str, Any]) -> Result:
    """Versions, the device, and the measured dense matmul peak used for the model FLOP utilisation."""
    import kornia

    import sslkit

    device = torch.device(form.device)
    details: dict[str, Any] = {"python": platform.python_version(), "torch": torch.__version__,
                               "kornia": kornia.__version__, "sslkit": getattr(sslkit, "__version__", "?"),
                               "cpus": os.cpu_count(), "cuda_runtime": torch.version.cuda}
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        details.update(device=props.name, capability=f"{props.major}.{props.minor}",
                       memory_gib=round(props.total_memory / 2**30, 1), multiprocessors=props.multi_processor_count)
    else:
        details["device"] = _cpu_model()
    dtype = {"bf16": torch.bfloat16, "fp32": torch.float32}[form.peak_dtype]
    peak = matmul_tflops(device, form.peak_size, dtype)
    facts["peak_tflops"] = peak
    details[f"matmul_{form.peak_size}_{form.peak_dtype}_tflops"] = _sig(peak)
    return f"{details['device']}, torch {torch.__version__}, {form.peak_dtype} matmul {peak:.3g} TFLOP/s", details


def cuda_tests(form: Form, scratch: Path, facts: dict[str, Any]) -> Result:
    """``pytest -m cuda`` over the test suite, counted from its JUnit XML report."""
    junit = scratch / "cuda-tests.xml"
    command = [sys.executable, "-m", "pytest", "-m", "cuda", *form.cuda_test_paths, "-q", "-p", "no:cacheprovider",
               f"--junitxml={junit}"]
    code, output = run_command(command)
    if not junit.exists():
        raise RuntimeError(f"pytest wrote no report (exit {code}):\n{output[-3000:]}")
    suite = ET.parse(junit).getroot()
    suite = suite if suite.tag == "testsuite" else suite.find("testsuite")
    counts = {k: int(suite.get(k, 0)) for k in ("tests", "failures", "errors", "skipped")}
    failed = [f"{case.get('classname')}::{case.get('name')}: {(bad.get('message') or '')[:300]}"
              for case in suite.iter("testcase") for bad in case if bad.tag in ("failure", "error")]
    passed = counts["tests"] - counts["failures"] - counts["errors"] - counts["skipped"]
    details = {**counts, "passed": passed, "exit_code": code, "failed": failed}
    if counts["tests"] == 0:
        raise RuntimeError("no test is marked cuda")
    summary = f"{passed} passed, {counts['failures'] + counts['errors']} failed, {counts['skipped']} skipped"
    if failed:
        raise RuntimeError(summary + "\n" + "\n".join(failed))
    return summary, details


def precision(form: Form, scratch: Path, facts: dict[str, Any]) -> Result:
    """A few steps of the small recipe under each precision of the form (bf16, fp16 with the scaler)."""
    details: dict[str, Any] = {"recipe": form.small_recipe, "batch": form.small_batch}
    parts = []
    for name in form.precisions:
        trainer = build_trainer(ROOT / form.small_recipe, [*form.small_overrides, f"data.batch_size={form.small_batch}",
                                                           f"run.precision={name}"], scratch)
        timing = timed_steps(trainer, prefetch(trainer, 2), form.warmup, form.steps)
        if trainer.scaler is not None:
            timing["grad_scale"] = trainer.scaler.get_scale()
        details[name] = timing
        parts.append(f"{name} {timing['step_ms']:.0f} ms/step{'' if timing['losses_finite'] else ' NON-FINITE'}")
        del trainer
        _free_memory()
    if not all(details[name]["losses_finite"] for name in form.precisions):
        raise RuntimeError("non-finite losses: " + ", ".join(parts))
    return ", ".join(parts), details


def augmentation(form: Form, scratch: Path, facts: dict[str, Any]) -> Result:
    """kornia_multicrop (crops drawn on the device) vs torchvision_multicrop (per image in the loader
    workers), images/s fully augmented, via :func:`augmentation_throughput.throughput`."""
    from augmentation_throughput import throughput, write_large_jpegs

    from sslkit.components import BuildContext
    from sslkit_plugins.augmentations.kornia_multicrop import KorniaMultiCrop, KorniaMultiCropParams
    from sslkit_plugins.augmentations.params import MultiCropParams
    from sslkit_plugins.augmentations.torchvision_multicrop import TorchvisionMultiCrop

    size, local = form.aug_sizes
    dataset = write_large_jpegs(scratch / "jpegs", form.aug_images, size=round(size * 8 / 7))
    args = argparse.Namespace(device=form.device, workers=form.aug_workers, batch_size=form.aug_batch,
                              steps=form.aug_steps)
    recipe = {"global_crop_size": size, "local_crop_size": local, "n_local": form.n_local}
    tv, tv_cpu = throughput(dataset, TorchvisionMultiCrop(MultiCropParams(**recipe), BuildContext()), args)
    ko, ko_cpu = throughput(dataset, KorniaMultiCrop(KorniaMultiCropParams(**recipe), BuildContext()), args)
    details = {"crops": f"2 x {size} px + {form.n_local} x {local} px", "batch": form.aug_batch,
               "loader_workers": form.aug_workers, "torchvision_images_per_s": round(tv, 1),
               "torchvision_cpu_ms_per_image": round(tv_cpu, 2), "kornia_images_per_s": round(ko, 1),
               "kornia_cpu_ms_per_image": round(ko_cpu, 2), "speedup": round(ko / tv, 2)}
    return f"{size}/{local} px: kornia {ko:.0f} img/s, torchvision {tv:.0f} img/s ({ko / tv:.2f}x)", details


def strategies(form: Form, scratch: Path, facts: dict[str, Any]) -> Result:
    """``sslkit train`` with ``train.strategy=ddp`` then ``fsdp2`` in one process launched by torchrun
    (``--nproc_per_node 1``): nccl on CUDA, gloo on the CPU (see :func:`torchrun_worker`)."""
    result = scratch / "strategies.json"
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "1",
               str(Path(__file__).with_name("gpu_check.py")), "--form", form.name, "--torchrun-worker", str(result),
               "--out", str(scratch / "strategies")]
    code, output = run_command(command)
    if not result.exists():
        raise RuntimeError(f"torchrun exited {code}:\n{output[-3000:]}")
    details = json.loads(result.read_text(encoding="utf-8"))
    parts = [f"{s} {details[s]['seconds']:.0f} s {details[s]['status']}" for s in ("ddp", "fsdp2")]
    summary = f"{details['backend']}, 1 process: " + ", ".join(parts)
    if any(details[s]["status"] != "ok" for s in ("ddp", "fsdp2")):
        raise RuntimeError(summary + "\n" + json.dumps(details, indent=1)[-3000:])
    return summary, details


def torchrun_worker(form: Form, result: Path, out: Path) -> None:
    """Inside torchrun: ``sslkit train`` (the CLI, in this process) once per strategy; write what each did."""
    import torch.distributed as dist

    from sslkit.cli.main import main

    report: dict[str, Any] = {}
    for strategy in ("ddp", "fsdp2"):
        run_dir = out / strategy
        start = time.perf_counter()
        try:
            code = main(["train", str(ROOT / form.small_recipe), *form.small_overrides, *form.strategy_overrides,
                         f"train.strategy={strategy}", "--output-dir", str(run_dir)])
            info = json.loads((run_dir / "run_info.json").read_text(encoding="utf-8"))
            metrics = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
            losses = [m["loss/total"] for m in metrics if "loss/total" in m]
            ok = (code == 0 and info.get("strategy") == strategy and bool(losses)
                  and all(math.isfinite(v) for v in losses))
            report[strategy] = {"status": "ok" if ok else "failed", "exit_code": code, "resolved": info.get("strategy"),
                                "world_size": info.get("world_size"), "losses": losses}
        except Exception as exc:  # recorded, and the other strategy still runs
            report[strategy] = {"status": "failed", "error": f"{type(exc).__name__}: {exc}"}
        report[strategy]["seconds"] = round(time.perf_counter() - start, 1)
        _free_memory()
    report["backend"] = dist.get_backend() if dist.is_initialized() else "no process group"
    result.write_text(json.dumps(report), encoding="utf-8")
    if dist.is_initialized():
        dist.destroy_process_group()


def compile_section(form: Form, scratch: Path, facts: dict[str, Any]) -> Result:
    """``train.compile`` off and on for the small recipe: images/s, and the compile time (the extra
    time of the warm-up steps with compilation over the same steps without)."""
    details: dict[str, Any] = {"recipe": form.small_recipe, "batch": form.compile_batch}
    modes = [False, True] if form.compile_on else [False]
    for on in modes:
        overrides = [*form.small_overrides, f"data.batch_size={form.compile_batch}",
                     f"run.precision={form.precisions[0]}", f"train.compile={str(on).lower()}"]
        trainer = build_trainer(ROOT / form.small_recipe, overrides, scratch)
        details["on" if on else "off"] = timed_steps(trainer, prefetch(trainer, 2), form.compile_warmup, form.steps)
        del trainer
        _free_memory()
    off = details["off"]
    if not form.compile_on:
        details["on"] = form.compile_skip_note
        return f"off {off['images_per_s']:.0f} img/s; on: skipped ({form.compile_skip_note})", details
    on = details["on"]
    details["compile_s"] = round(on["warmup_s"] - off["warmup_s"], 1)
    details["speedup"] = round(on["images_per_s"] / off["images_per_s"], 2)
    return (f"off {off['images_per_s']:.0f} img/s, on {on['images_per_s']:.0f} img/s "
            f"({details['speedup']:.2f}x), compile {details['compile_s']:.0f} s"), details


def _count_flops(trainer: Any, batch: Any, step: int) -> int:
    """FLOPs of one training step counted by ``torch.utils.flop_counter.FlopCounterMode``."""
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:
        trainer.train_step(step, batch)
    _sync(trainer.info.device)
    return int(counter.get_total_flops())


def analytic_backbone_flops(trainer: Any) -> float | None:
    """Backbone FLOPs per image of one step from the ViT's shapes, a cross-check of the counted FLOPs
    (heads and losses not included): for a crop of T tokens (CLS, registers, N patches) each block's
    linear layers cost 2 T W (W: their weights), its attention 4 T^2 D (q k^T and the weighted sum), the
    patch embedding 2 N 3 p^2 D. The student runs its crops forward and backward (x3), each block only
    on the batch subset that its stochastic depth keeps (DINOv2's form, above a rate of 0.1); the
    teacher runs the global crops forward. ``None`` for a backbone without the ViT's attributes."""
    from torch import nn

    from sslkit_plugins.backbones.vit_blocks import SUBSET_DROP_PATH_ABOVE

    backbone, aug, batch = trainer.parts.backbone, trainer.parts.augmentation, trainer.global_batch
    if not all(hasattr(backbone, a) for a in ("blocks", "embed_dim", "patch_size", "num_register_tokens")):
        return None
    dim, patch = backbone.embed_dim, backbone.patch_size

    def forward(size: int, n_crops: int, student: bool) -> float:
        rows, patches = n_crops * batch, (size // patch) ** 2
        tokens = 1 + backbone.num_register_tokens + patches
        total = rows * 2 * patches * 3 * patch**2 * dim
        for block in backbone.blocks:
            weights = sum(m.weight.numel() for m in block.modules() if isinstance(m, nn.Linear))
            rate = getattr(block, "drop_path_rate", 0.0) if student else 0.0
            kept = max(int(rows * (1 - rate)), 1) if rate > SUBSET_DROP_PATH_ABOVE else rows
            total += kept * (2 * tokens * weights + 4 * tokens**2 * dim)
        return total

    student = forward(aug.global_crop_size, aug.n_global, True) + forward(aug.local_crop_size, aug.n_local, True)
    return (3 * student + forward(aug.global_crop_size, aug.n_global, False)) / batch


def throughput(form: Form, scratch: Path, facts: dict[str, Any]) -> Result:
    """Training images/s of the official ViT-L/16 configuration on synthetic data, and the model FLOP
    utilisation: FLOPs per step (FlopCounterMode over one step) x steps/s over the dense matmul peak."""
    recipe, overrides, notes = form.throughput_recipe()
    details: dict[str, Any] = {"recipe": str(recipe.relative_to(ROOT)), "notes": notes}
    for batch in form.throughput_batches:
        try:
            trainer = build_trainer(recipe, [*overrides, f"data.batch_size={batch}"], scratch)
            batches = prefetch(trainer, form.throughput_prefetch)
            timing = timed_steps(trainer, batches, form.warmup, form.throughput_steps)
            flops = _count_flops(trainer, batches[0], form.warmup + form.throughput_steps)
            break
        except torch.cuda.OutOfMemoryError:
            notes.append(f"batch {batch} per GPU ran out of memory")
        trainer = batches = None  # what the failed attempt held, freed outside the except block
        _free_memory()
    else:
        raise RuntimeError("; ".join(notes))
    if trainer.info.device.type == "cuda":
        details["cuda_peak_gib"] = round(torch.cuda.max_memory_allocated() / 2**30, 1)
    step_s = timing["step_ms"] / 1000
    achieved = flops / step_s / 1e12
    peak = facts.get("peak_tflops")
    details.update(batch=batch, **timing, gflops_per_image=_sig(flops / trainer.global_batch / 1e9),
                   tflops_per_step=_sig(flops / 1e12), achieved_tflops=_sig(achieved),
                   flop_count="torch.utils.flop_counter.FlopCounterMode over one whole training step (teacher "
                              "forward, student forward and backward, heads and losses; optimizer excluded)",
                   timing_method=f"{form.throughput_prefetch} prefetched batches cycled: data loading excluded, "
                                 "multi-crop augmentation on the device included")
    analytic = analytic_backbone_flops(trainer)
    if analytic is not None:
        details["backbone_analytic_gflops_per_image"] = _sig(analytic / 1e9)
        details["counted_over_analytic_backbone"] = _sig(flops / trainer.global_batch / analytic)
    summary = f"batch {batch}: {timing['images_per_s']:.0f} img/s, {achieved:.3g} TFLOP/s"
    if peak:
        details["mfu_vs_measured_peak"] = _sig(achieved / peak)
        summary += f", MFU {achieved / peak:.1%} of measured peak"
    if form.device == "cuda":
        details["mfu_vs_datasheet_989"] = _sig(achieved / DATASHEET_BF16_TFLOPS)
        summary += f" ({achieved / DATASHEET_BF16_TFLOPS:.1%} of {DATASHEET_BF16_TFLOPS:.0f})"
    del trainer, batches
    _free_memory()
    return summary, details


SECTIONS = {
    "environment": ("Environment and dense bf16 matmul peak", environment),
    "throughput": ("Official ViT-L/16 configuration: throughput and model FLOP utilisation", throughput),
    "precision": ("bf16 and fp16-with-scaler training steps", precision),
    "augmentation": ("kornia multi-crop on the device vs torchvision per image", augmentation),
    "strategies": ("ddp and fsdp2, one process under torchrun", strategies),
    "cuda_tests": ("The test suite's CUDA-only cases (pytest -m cuda)", cuda_tests),
    "compile": ("train.compile off and on", compile_section),
}
