"""What the machine offers for training: the CPU model and the instruction-set flags that decide
whether bfloat16 is fast, the CUDA device, the torch version and thread count.

bf16 on a CPU is fast only with native bf16 instructions: x86 ``avx512_bf16`` (AVX512-BF16
dot products, Cooper Lake / Zen 4 and later) or ``amx_bf16`` (AMX tiles, Sapphire Rapids and
later); ARMv8.6 ``bf16`` (e.g. Graviton 3) on arm64. Without them torch emulates bf16 through
fp32 conversions and a training step is about 10-20x slower than in fp32 (measured 17-19x on
AVX2/AVX512F Xeon and EPYC CPUs). Flags are read from ``/proc/cpuinfo`` (Linux); elsewhere they
are unknown and the answer is conservative (no native bf16).
"""

from __future__ import annotations

import contextlib
import platform
from functools import lru_cache
from pathlib import Path
from typing import Any

import torch

#: The x86 flags reported by :func:`cpu_info` (what the benchmarks and the precision choice need).
X86_FLAGS = ("avx2", "avx512f", "avx512_bf16", "amx_bf16")
#: Flags that mean native bf16 arithmetic on the CPU (x86 and arm64).
NATIVE_BF16_FLAGS = frozenset({"avx512_bf16", "amx_bf16", "bf16"})
_CPUINFO = Path("/proc/cpuinfo")


def _parse_cpuinfo(text: str) -> tuple[str, frozenset[str]]:
    """The model name and flag set of the first processor of a ``/proc/cpuinfo`` text (x86: ``model
    name`` / ``flags``; arm64: ``Features``, model from ``CPU part`` when no name is given)."""
    model, flags = "", frozenset[str]()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key = key.strip().lower()
        if key == "model name" and not model:
            model = value.strip()
        elif key in ("flags", "features") and not flags:
            flags = frozenset(value.split())
        if model and flags:
            break
    return model, flags


@lru_cache(maxsize=1)
def cpu_model_and_flags() -> tuple[str, frozenset[str]]:
    """This machine's CPU model name and instruction-set flags (empty flags when unknown)."""
    model, flags = "", frozenset[str]()
    if _CPUINFO.is_file():
        with contextlib.suppress(OSError):
            model, flags = _parse_cpuinfo(_CPUINFO.read_text(encoding="utf-8", errors="replace"))
    return model or platform.processor() or platform.machine() or "unknown CPU", flags


def cpu_has_native_bf16(flags: frozenset[str] | set[str] | None = None, machine: str | None = None) -> bool:
    """Whether the CPU computes bf16 natively: x86 ``avx512_bf16`` or ``amx_bf16``, arm64 ``bf16``.

    ``flags`` / ``machine`` default to this machine's (``platform.machine()``); unknown flags
    (not Linux) give ``False``.
    """
    flags = cpu_model_and_flags()[1] if flags is None else frozenset(flags)
    machine = (platform.machine() if machine is None else machine).lower()
    if machine in ("aarch64", "arm64"):
        return "bf16" in flags
    return bool(flags & {"avx512_bf16", "amx_bf16"})


def cpu_info() -> dict[str, Any]:
    """The CPU model, the x86 flags of :data:`X86_FLAGS` (``True``/``False``; arm64 adds ``bf16``),
    native bf16 support, the torch version and the intra-op thread count, e.g. for a run's
    ``run_info.json`` or a benchmark's report."""
    model, flags = cpu_model_and_flags()
    machine = platform.machine()
    info: dict[str, Any] = {"cpu_model": model, "machine": machine}
    info["flags"] = {name: name in flags for name in X86_FLAGS}
    if machine.lower() in ("aarch64", "arm64"):
        info["flags"]["bf16"] = "bf16" in flags
    info["native_bf16"] = cpu_has_native_bf16(flags, machine)
    info["torch"] = str(torch.__version__)
    info["threads"] = torch.get_num_threads()
    return info


def cpu_summary(info: dict[str, Any] | None = None) -> str:
    """One line for logs and figures, e.g. ``Intel Xeon @ 2.00GHz (avx2, avx512f; no native bf16), 2 threads``."""
    info = cpu_info() if info is None else info
    present = [name for name, on in info["flags"].items() if on]
    bf16 = "native bf16" if info["native_bf16"] else "no native bf16"
    flags = ", ".join(present) if present else "flags unknown"
    return f"{info['cpu_model']} ({flags}; {bf16}), torch {info['torch']}, {info['threads']} threads"


def cuda_bf16_supported(device: torch.device) -> bool:
    """Whether the CUDA device computes bf16 natively (compute capability 8.0+, Ampere and later)."""
    if device.type != "cuda" or not torch.cuda.is_available():
        return False
    return torch.cuda.get_device_capability(device)[0] >= 8


def device_info(device: torch.device) -> dict[str, Any]:
    """The training device: its name, and for CUDA the GPU model and compute capability."""
    info: dict[str, Any] = {"device": str(device)}
    if device.type == "cuda" and torch.cuda.is_available():
        info["cuda_name"] = torch.cuda.get_device_name(device)
        info["cuda_capability"] = ".".join(map(str, torch.cuda.get_device_capability(device)))
    return info
