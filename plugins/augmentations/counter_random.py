"""Counter-based uniform random numbers: ``u(seed, crop, slot)`` is a pure function.

Every random quantity of a crop is one "slot" of a stateless hash of (image seed, crop index,
slot index), computed for a whole batch at once with vectorised 64-bit integer arithmetic.
Nothing depends on the order of draws, the batch composition, the loader worker or the
process, which is what makes augmentation identical for any number of workers or ranks.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import torch
from torch import Tensor

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_MUL1 = np.uint64(0xBF58476D1CE4E5B9)
_MUL2 = np.uint64(0x94D049BB133111EB)


def _mix(x: npt.NDArray[np.uint64]) -> npt.NDArray[np.uint64]:
    """The splitmix64 finaliser: a bijective avalanche mix of uint64 values (wrapping arithmetic)."""
    x = x + _GOLDEN
    x = (x ^ (x >> np.uint64(30))) * _MUL1
    x = (x ^ (x >> np.uint64(27))) * _MUL2
    mixed: npt.NDArray[np.uint64] = x ^ (x >> np.uint64(31))  # numpy types uint64 ^ uint64 as ndarray[Any, Any]
    return mixed


def uniforms(sample_seeds: Tensor | list[int], n_crops: int, n_slots: int) -> Tensor:
    """Uniform floats in [0, 1) of shape ``[n_crops, B, n_slots]`` (float64, CPU).

    Entry ``[c, b, k]`` depends only on ``(sample_seeds[b], c, k)``.
    """
    seeds = torch.as_tensor(sample_seeds, dtype=torch.int64).cpu().numpy().astype(np.uint64)
    counters = (
        np.arange(n_crops, dtype=np.uint64)[:, None, None] * np.uint64(n_slots)
        + np.arange(n_slots, dtype=np.uint64)[None, None, :]
    )
    with np.errstate(over="ignore"):
        keys = _mix(counters + np.uint64(1))
        bits = _mix(_mix(seeds)[None, :, None] ^ keys)
    return torch.from_numpy((bits >> np.uint64(11)).astype(np.float64) * 2.0**-53)
