"""Mixed precision: the choice of ``run.precision`` for the hardware, autocast contexts and the
fp16 gradient scaler, for CPU and CUDA alike.

``auto`` resolves to bf16 autocast where bf16 is native (CUDA devices of compute capability 8.0+,
CPUs with AVX512-BF16 / AMX-BF16 or arm64 BF16; see :mod:`sslkit.hardware`) and to fp32
elsewhere: emulated bf16 makes a CPU step about 10-20x slower than fp32.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from dataclasses import dataclass

import torch

from sslkit import hardware
from sslkit.errors import SSLKitError

log = logging.getLogger("sslkit")

DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}
#: The slow-down of emulated bf16 against fp32 on CPUs without native bf16 (measured 17-19x).
EMULATED_BF16_SLOWDOWN = "about 10-20x"


@dataclass(frozen=True)
class PrecisionChoice:
    """The precision a run uses: what the recipe asked, what it resolved to and why."""

    requested: str
    resolved: str
    reason: str
    warning: str | None = None

    def as_dict(self) -> dict[str, str | None]:
        return {"requested": self.requested, "resolved": self.resolved, "reason": self.reason,
                "warning": self.warning}


def resolve_precision(requested: str, device: torch.device, *, native_bf16: bool | None = None,
                      cpu: str | None = None) -> PrecisionChoice:
    """Resolve ``run.precision`` for ``device``.

    ``native_bf16`` says whether the device computes bf16 natively (default: detected, see
    :func:`sslkit.hardware.cpu_has_native_bf16` / :func:`sslkit.hardware.cuda_bf16_supported`);
    ``cpu`` names the processor in the messages. ``auto`` gives bf16 with native bf16, else fp32;
    an explicit ``bf16`` on a CPU without native bf16 is kept but carries a warning.
    """
    if native_bf16 is None:
        native_bf16 = (hardware.cuda_bf16_supported(device) if device.type == "cuda"
                       else hardware.cpu_has_native_bf16())
    if device.type == "cuda":
        where = f"CUDA device {torch.cuda.get_device_name(device)}" if torch.cuda.is_available() else "CUDA device"
    else:
        where = f"CPU {cpu or hardware.cpu_model_and_flags()[0]}"
    native = (f"{where} computes bf16 natively" if native_bf16
              else f"{where} has no native bf16" + (" (no avx512_bf16 / amx_bf16)" if device.type == "cpu" else ""))
    if requested == "auto":
        return PrecisionChoice(requested, "bf16" if native_bf16 else "fp32", f"auto: {native}")
    warning = None
    if requested == "bf16" and device.type == "cpu" and not native_bf16:
        warning = (f"run.precision=bf16 on a CPU without native bf16 ({where}): bf16 is emulated, expect "
                   f"training steps {EMULATED_BF16_SLOWDOWN} slower than fp32; use run.precision=auto or fp32")
    return PrecisionChoice(requested, requested, f"set in the recipe; {native}", warning)


def announce(choice: PrecisionChoice) -> None:
    """Log the resolved precision (and the warning of an emulated bf16)."""
    log.info("precision: %s -> %s (%s)", choice.requested, choice.resolved, choice.reason)
    if choice.warning is not None:
        log.warning("%s", choice.warning)


def check_precision(precision: str, device: torch.device) -> None:
    """fp16 needs CUDA (a grad scaler on CPU is not supported); bf16 needs hardware support on CUDA."""
    if precision == "fp16" and device.type != "cuda":
        raise SSLKitError("run.precision: fp16 needs a CUDA device; use auto, bf16 or fp32 on the CPU")
    if precision == "bf16" and device.type == "cuda" and not torch.cuda.is_bf16_supported():
        raise SSLKitError("run.precision: this GPU does not support bf16; use fp16 or fp32")


@contextlib.contextmanager
def autocast(precision: str, device: torch.device) -> Iterator[None]:
    """Autocast to bf16/fp16 for a resolved ``precision`` (no-op for fp32)."""
    if precision == "fp32":
        yield
        return
    with torch.autocast(device_type=device.type, dtype=DTYPES[precision]):
        yield


def grad_scaler(precision: str, device: torch.device) -> torch.amp.GradScaler | None:
    """A gradient scaler for fp16 on CUDA, else ``None``."""
    if precision == "fp16":
        return torch.amp.GradScaler(device.type)
    return None
