"""Counter-based seeds: every random draw depends only on (run seed, step, stream, index).

This is what makes data order, augmentation, masks and crop selection identical whatever the
number of processes or loader workers, and what makes a resumed run continue exactly.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable

import torch
from torch import Tensor

_MASK64 = (1 << 64) - 1
_MASK63 = (1 << 63) - 1


def derive_seed(*parts: int | str) -> int:
    """A 63-bit seed from any sequence of ints and strings (stable across processes and runs)."""
    digest = hashlib.blake2b(repr(parts).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") & _MASK63


def generator(*parts: int | str, device: str | torch.device = "cpu") -> torch.Generator:
    """A torch generator seeded with :func:`derive_seed` of ``parts``."""
    g = torch.Generator(device=device)
    g.manual_seed(derive_seed(*parts))
    return g


def _splitmix64(x: int) -> int:
    x = (x + 0x9E3779B97F4A7C15) & _MASK64
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & _MASK64
    return (x ^ (x >> 31)) & _MASK63


def sample_seeds(seed: int, step: int, global_indices: Iterable[int] | Tensor) -> Tensor:
    """One int64 seed per image from (run seed, step, index of the image in the global batch).

    ``global_indices``: any iterable of ints (a ``range``, a list) or a 1-D integer tensor.
    """
    base = derive_seed(seed, step, "sample")
    return torch.tensor([_splitmix64(base ^ int(i)) for i in global_indices], dtype=torch.int64)
