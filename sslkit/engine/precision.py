"""Mixed precision: autocast contexts and the fp16 gradient scaler, for CPU and CUDA alike."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch

from sslkit.errors import SSLKitError

DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


def check_precision(precision: str, device: torch.device) -> None:
    """fp16 needs CUDA (a grad scaler on CPU is not supported); bf16 needs hardware support on CUDA."""
    if precision == "fp16" and device.type != "cuda":
        raise SSLKitError("run.precision: fp16 needs a CUDA device; use bf16 on CPU (run.precision=bf16) or fp32")
    if precision == "bf16" and device.type == "cuda" and not torch.cuda.is_bf16_supported():
        raise SSLKitError("run.precision: this GPU does not support bf16; use fp16 or fp32")


@contextlib.contextmanager
def autocast(precision: str, device: torch.device) -> Iterator[None]:
    """Autocast to bf16/fp16 for ``precision`` (no-op for fp32)."""
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
