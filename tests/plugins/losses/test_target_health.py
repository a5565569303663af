"""Health indicators of teacher target distributions on constructed cases (uniform, one-hot, mixed)."""

from __future__ import annotations

import math

import pytest
import torch

from sslkit_plugins.losses.target_health import mean_entropy, target_coverage, target_health, target_usage


def test_entropy_of_uniform_is_ln_k_and_one_hot_is_zero() -> None:
    k = 1000
    uniform = torch.full((7, k), 1.0 / k)
    health = target_health(uniform)
    assert health["teacher_entropy"].ndim == 0
    assert health["teacher_entropy"].item() == pytest.approx(math.log(k), abs=1e-5)
    assert health["entropy_gap"].item() == pytest.approx(0.0, abs=1e-5)
    one_hot = torch.eye(k)[:7]
    assert mean_entropy(one_hot).item() == 0.0
    assert target_health(one_hot)["entropy_gap"].item() == pytest.approx(math.log(k), abs=1e-5)


def test_entropy_is_the_mean_over_rows_and_zero_without_rows() -> None:
    probs = torch.tensor([[0.5, 0.25, 0.25, 0.0], [1.0, 0.0, 0.0, 0.0]])
    # Row entropies: 0.5 ln 2 + 2 * 0.25 ln 4 = 1.5 ln 2, and 0.
    assert mean_entropy(probs).item() == pytest.approx(0.75 * math.log(2), abs=1e-6)
    assert mean_entropy(torch.zeros(0, 4)).item() == 0.0


def test_usage_and_coverage_on_a_constructed_case() -> None:
    winners = torch.tensor([0, 0, 2, 5])  # 3 distinct dimensions out of K = 8
    probs = torch.full((4, 8), 0.05).scatter(1, winners[:, None], 0.65)
    assert target_usage(probs).item() == pytest.approx(3 / 8)
    assert target_coverage(probs).item() == pytest.approx((3 - 1) / (4 - 1))  # min(M, K) = 4
    same = torch.full((16, 8), 0.05).scatter(1, torch.zeros(16, 1, dtype=torch.long), 0.65)
    assert target_usage(same).item() == pytest.approx(1 / 8)
    assert target_coverage(same).item() == 0.0
    assert target_coverage(torch.eye(8)).item() == 1.0
    assert target_coverage(torch.zeros(0, 8)).item() == 1.0  # no rows: nothing to see


def test_target_health_gives_zero_dim_tensors_under_the_detector_names() -> None:
    torch.manual_seed(0)
    health = target_health(torch.softmax(torch.randn(8, 5), -1))
    assert set(health) == {"teacher_entropy", "entropy_gap", "target_usage", "target_coverage"}
    assert all(isinstance(v, torch.Tensor) and v.ndim == 0 for v in health.values())
