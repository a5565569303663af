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


#: Environment that makes PyTorch's own kernels, MKL's GEMMs and oneDNN use at most AVX2 on a CPU that
#: has more (AVX512): how this project measures "an AVX2 CPU" on an AVX512 machine. The instruction
#: set is the same as on an AVX2-only CPU; core, caches and clock stay this machine's.
CPU_ISA_ENV = {
    "avx2": {"ATEN_CPU_CAPABILITY": "avx2", "MKL_ENABLE_INSTRUCTIONS": "AVX2", "ONEDNN_MAX_CPU_ISA": "AVX2"},
}


def cpu_isa_env(isa: str) -> dict[str, str]:
    """The environment variables that restrict every kernel library to ``isa`` (``native``: none)."""
    return {} if isa == "native" else CPU_ISA_ENV[isa]


def describe(threads: int) -> str:
    """One line: CPU model and flags, the instruction set PyTorch's kernels dispatch to (with any
    MKL / oneDNN restriction), torch version, the benchmark's threads, GPU, load average."""
    info = cpu_info()
    flags = ", ".join(f"{name} {'yes' if on else 'no'}" for name, on in info["flags"].items())
    kernels = torch.backends.cpu.get_cpu_capability()
    limits = [f"{key}={os.environ[key]}" for key in ("MKL_ENABLE_INSTRUCTIONS", "ONEDNN_MAX_CPU_ISA")
              if key in os.environ]
    kernels += f" ({', '.join(limits)})" if limits else ""
    line = (f"CPU {info['cpu_model']} x {os.cpu_count()} ({flags}; kernels {kernels}); torch {info['torch']}, "
            f"{threads} threads")
    if torch.cuda.is_available():
        line += f"; GPU {torch.cuda.get_device_name()}"
    return line + f"; load average {os.getloadavg()[0]:.2f}"
