"""The read-back check every export ends with: each tensor written is in the file, with its name,
shape, dtype and values, and nothing else is."""

from __future__ import annotations

import torch
from torch import Tensor

from sslkit.errors import SSLKitError
from sslkit.weights.sources import listing


def check_written(expected: dict[str, Tensor], read: dict[str, Tensor], where: str) -> None:
    """Raise :class:`SSLKitError` naming ``where`` and the tensors that differ between what was meant
    to be written (``expected``) and what reading the output back gave (``read``)."""
    missing = sorted(set(expected) - set(read))
    extra = sorted(set(read) - set(expected))
    different = [
        f"{k} {tuple(read[k].shape)} {read[k].dtype} (written {tuple(v.shape)} {v.dtype})"
        if read[k].shape != v.shape or read[k].dtype != v.dtype
        else f"{k} (values)"
        for k, v in expected.items()
        if k in read
        and not (read[k].shape == v.shape and read[k].dtype == v.dtype and torch.equal(read[k].cpu(), v.cpu()))
    ]
    if missing or extra or different:
        lines = [f"export: reading {where} back does not give the tensors written:"]
        for label, items in (("missing", missing), ("not written by sslkit", extra), ("different", different)):
            if items:
                lines.append(f"  {label} ({len(items)}): {listing(items)}")
        raise SSLKitError("\n".join(lines))
