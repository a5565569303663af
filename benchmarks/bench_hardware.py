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

from sslkit.hardware import cpu_has_native_bf16, cpu_info, cuda_bf16_supported


def default_precision(device: str = "cpu") -> str:
    """``bf16`` on a bf16-native CPU or a bf16-capable GPU, else ``fp32``."""
    if device.startswith("cuda"):
        return "bf16" if cuda_bf16_supported(torch.device(device)) else "fp32"
    return "bf16" if cpu_has_native_bf16() else "fp32"


def describe(threads: int) -> str:
    """One line: CPU model and flags, torch version, the benchmark's threads, GPU, load average."""
    info = cpu_info()
    flags = ", ".join(f"{name} {'yes' if on else 'no'}" for name, on in info["flags"].items())
    line = (f"CPU {info['cpu_model']} x {os.cpu_count()} ({flags}); torch {info['torch']}, {threads} threads")
    if torch.cuda.is_available():
        line += f"; GPU {torch.cuda.get_device_name()}"
    return line + f"; load average {os.getloadavg()[0]:.2f}"
