"""Naive reference implementations of the teacher-target formulas (DINO, Caron et al. 2021, eq. 3-4; SwAV, Caron et
al. 2020, eq. 3), written
with explicit loops in float64, shared by the loss tests as fixtures."""

from __future__ import annotations

import math
from collections.abc import Callable

import pytest
import torch
from torch import Tensor


def _naive_sinkhorn_knopp(logits: Tensor, temperature: float, iterations: int) -> Tensor:
    """Q[k][b] = exp(t[b][k] / T); normalise total, then (prototype rows -> 1/K, sample columns -> 1/B)."""
    n, k = logits.shape
    q = [[math.exp(float(logits[b, p]) / temperature) for b in range(n)] for p in range(k)]
    total = sum(sum(row) for row in q)
    q = [[v / total for v in row] for row in q]
    for _ in range(iterations):
        for p in range(k):
            s = sum(q[p])
            q[p] = [v / s / k for v in q[p]]
        for b in range(n):
            s = sum(q[p][b] for p in range(k))
            for p in range(k):
                q[p][b] = q[p][b] / s / n
    return torch.tensor([[q[p][b] * n for p in range(k)] for b in range(n)], dtype=torch.float64)


def _naive_centered_softmax(logits: Tensor, center: Tensor, temperature: float) -> Tensor:
    rows = []
    for b in range(logits.shape[0]):
        z = [math.exp((float(logits[b, p]) - float(center[0, p])) / temperature) for p in range(logits.shape[1])]
        rows.append([v / sum(z) for v in z])
    return torch.tensor(rows, dtype=torch.float64)


@pytest.fixture
def naive_sinkhorn_knopp() -> Callable[[Tensor, float, int], Tensor]:
    return _naive_sinkhorn_knopp


@pytest.fixture
def naive_centered_softmax() -> Callable[[Tensor, Tensor, float], Tensor]:
    return _naive_centered_softmax
