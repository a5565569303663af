"""One command that checks sslkit on a GPU and writes one report (``make gpu-check``).

Sections (:mod:`gpu_check_sections`), run in this order, each timed and guarded (a failing
section records its error and the check goes on; a section that outlives its cap is stopped):

1. ``environment``: versions, the device, a dense bf16 8192^3 matmul rate (the peak of step 2);
2. ``throughput``: the official ViT-L/16 configuration (``--recipe``, default
   ``recipes/dinov2/vitl16_short.yaml``) on synthetic 224 px images, 64 images per GPU (32 if 64
   does not fit): images/s and model FLOP utilisation (FLOPs of one whole step counted by
   ``torch.utils.flop_counter.FlopCounterMode`` x steps/s, over the measured peak and over the
   989 TFLOP/s datasheet figure);
3. ``precision``: a few steps under bf16 and under fp16 with the gradient scaler;
4. ``augmentation``: kornia multi-crop on the device vs torchvision per image, 224/96 px crops;
5. ``strategies``: ``sslkit train`` with ``train.strategy=ddp`` and ``fsdp2``, one process under
   torchrun (nccl);
6. ``cuda_tests``: ``pytest -m cuda`` over the test suite;
7. ``compile``: ``train.compile`` off and on (images/s, compile time).

Training sections time ``Trainer.train_step`` on a few prefetched batches cycled (data loading
excluded, augmentation on the device included). A global time budget (``--budget``) skips the
sections that no longer fit, with a note. The report (``gpu-check.md`` and ``gpu-check.json``
under ``--out``) is rewritten after every section, so a run stopped from outside keeps what it
measured; the markdown ends with the summary table, also printed last.

Without CUDA (or with ``--form cpu``) the same command runs every section with tiny CPU sizes:
gloo instead of nccl, fp32 and bf16 instead of bf16 and fp16, the CUDA tests skipped, compile
measured off only (see :mod:`gpu_check_forms`). CI runs this form (``tests/test_gpu_check_cpu.py``).

Run: ``.venv/bin/python benchmarks/gpu_check.py [--out build/gpu-check] [--budget 430]
[--form auto|gpu|cpu] [--recipe PATH] [--sections NAME ...]``; on the lent GPU machine,
``bash benchmarks/gpu_check.sh`` (see docs/performance.md, "GPU check").
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import tempfile
import time
import traceback
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch
from gpu_check_forms import CPU, GPU, OFFICIAL_RECIPE, Form
from gpu_check_sections import SECTIONS, torchrun_worker

#: A section is skipped when less than this is left of the budget (seconds, per form).
MIN_SECONDS = {"gpu": 20.0, "cpu": 0.0}


class SectionTimeout(Exception):
    """A section outlived its time cap."""


def _on_alarm(signum: int, frame: Any) -> None:
    raise SectionTimeout


def _on_term(signum: int, frame: Any) -> None:
    """Stopped from outside (``timeout``): unwind, so that the running section kills its subprocesses."""
    raise SystemExit(128 + signum)


def run_section(name: str, form: Form, scratch: Path, facts: dict[str, Any], cap: float) -> dict[str, Any]:
    """Run one section under a ``cap``-second alarm; its status, time, summary, details or error."""
    title, function = SECTIONS[name]
    record: dict[str, Any] = {"name": name, "title": title, "cap_s": round(cap)}
    signal.signal(signal.SIGALRM, _on_alarm)
    signal.setitimer(signal.ITIMER_REAL, cap)
    start = time.perf_counter()
    try:
        summary, details = function(form, scratch, facts)
        record.update(status="ok", summary=summary, details=details)
    except SectionTimeout:
        record.update(status="timeout", summary=f"stopped after its {cap:.0f} s cap")
    except Exception as exc:
        first = str(exc).splitlines()[0][:160] if str(exc) else ""
        record.update(status="error", summary=f"{type(exc).__name__}: {first}",
                      error="".join(traceback.format_exception(exc))[-4000:])
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
    record["seconds"] = round(time.perf_counter() - start, 1)
    return record


def _value(value: Any) -> str:
    return json.dumps(value) if isinstance(value, list | dict) else str(value)


def markdown(report: dict[str, Any]) -> str:
    """The report as markdown: the header, every section's details, then the summary table."""
    lines = [f"# sslkit GPU check ({report['form']} form)", "",
             f"Started {report['started']}, {report['elapsed_s']:.0f} s of a {report['budget_s']:.0f} s budget.", ""]
    for i, section in enumerate(report["sections"], 1):
        lines += [f"## {i}. {section['title']}", "", f"**{section['status']}** in {section['seconds']} s: "
                  f"{section['summary']}", ""]
        lines += [f"- {key}: {_value(value)}" for key, value in section.get("details", {}).items()]
        if "error" in section:
            lines += ["", "```", section["error"].rstrip(), "```"]
        lines.append("")
    lines += ["## Summary", "", "| # | section | status | s | result |", "| --- | --- | --- | ---: | --- |"]
    lines += [f"| {i} | {s['name']} | {s['status']} | {s['seconds']:.0f} | {s['summary']} |"
              for i, s in enumerate(report["sections"], 1)]
    return "\n".join(lines) + "\n"


def write_report(report: dict[str, Any], out: Path) -> str:
    out.mkdir(parents=True, exist_ok=True)
    text = markdown(report)
    (out / "gpu-check.md").write_text(text, encoding="utf-8")
    (out / "gpu-check.json").write_text(json.dumps(report, indent=1) + "\n", encoding="utf-8")
    return text


def check(form: Form, names: list[str], budget: float, out: Path) -> dict[str, Any]:
    """Run ``names`` in order within ``budget`` seconds, rewriting the report after each section."""
    start = time.perf_counter()
    report: dict[str, Any] = {"form": form.name, "started": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
                              "budget_s": budget, "elapsed_s": 0.0, "sections": []}
    facts: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="gpu-check-") as tmp:
        for name in names:
            left = budget - (time.perf_counter() - start)
            if left <= max(MIN_SECONDS[form.name], 1.0):
                record = {"name": name, "title": SECTIONS[name][0], "status": "skipped", "seconds": 0.0,
                          "summary": f"skipped: {max(left, 0):.0f} s of the {budget:.0f} s budget left"}
            else:
                print(f"== {name} (cap {min(form.caps[name], left):.0f} s)", flush=True)
                scratch = Path(tmp) / name
                scratch.mkdir()
                record = run_section(name, form, scratch, facts, min(form.caps[name], left))
                print(f"   {record['status']} in {record['seconds']} s: {record['summary']}", flush=True)
            report["sections"].append(record)
            report["elapsed_s"] = round(time.perf_counter() - start, 1)
            write_report(report, out)
    return report


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("build/gpu-check"), help="report folder")
    parser.add_argument("--form", choices=["auto", "gpu", "cpu"], default="auto",
                        help="gpu or the tiny cpu version (auto: gpu when CUDA is available)")
    parser.add_argument("--budget", type=float, default=430.0, help="seconds for all sections together")
    parser.add_argument("--recipe", type=Path, default=OFFICIAL_RECIPE, help="recipe of the throughput section")
    parser.add_argument("--sections", nargs="+", choices=list(SECTIONS), default=list(SECTIONS))
    parser.add_argument("--torchrun-worker", type=Path, help=argparse.SUPPRESS)  # inside torchrun (strategies)
    args = parser.parse_args()
    use_gpu = args.form == "gpu" or (args.form == "auto" and torch.cuda.is_available())
    form = replace(GPU if use_gpu else CPU, recipe=args.recipe.resolve())
    if args.torchrun_worker is not None:
        torchrun_worker(form, args.torchrun_worker, args.out)
        return 0
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    signal.signal(signal.SIGTERM, _on_term)
    report = check(form, args.sections, args.budget, args.out)
    print(write_report(report, args.out), end="")
    return 0 if all(s["status"] in ("ok", "skipped") for s in report["sections"]) else 1


if __name__ == "__main__":
    sys.exit(main())
