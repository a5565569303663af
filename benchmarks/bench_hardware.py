"""What a benchmark ran on, and the precision it runs every contender at by default.

Every benchmark prints :func:`describe` in its header (CPU model, the flags that decide CPU
speed, torch version, thread count, load average, GPU if any), so that a figure always names the
hardware it came from. :func:`default_precision` is what ``run.precision: auto`` picks: bf16 on a
CPU with native bf16 (AVX512-BF16 or AMX) or a bf16-capable GPU, fp32 elsewhere (emulated bf16
is many times slower than fp32).
"""

from __future__ import annotations

import os

import torch

from sslkit.engine.precision import resolve_precision
from sslkit.hardware import cpu_info


def default_precision(device: str = "cpu") -> str:
    """What ``run.precision: auto`` resolves to on ``device`` (the engine's own rule)."""
    return resolve_precision("auto", torch.device(device)).resolved


def describe(threads: int) -> str:
    """One line: CPU model and flags, torch version, the benchmark's threads, GPU, load average."""
    info = cpu_info()
    flags = ", ".join(f"{name} {'yes' if on else 'no'}" for name, on in info["flags"].items())
    line = (f"CPU {info['cpu_model']} x {os.cpu_count()} ({flags}); torch {info['torch']}, {threads} threads")
    if torch.cuda.is_available():
        line += f"; GPU {torch.cuda.get_device_name()}"
    return line + f"; load average {os.getloadavg()[0]:.2f}"
