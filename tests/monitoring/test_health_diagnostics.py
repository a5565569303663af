"""Representation diagnostics on constructed cases and the collapse detector on collapsed / healthy batches
(the target-distribution indicators it reads come from the losses: tests/plugins/losses/test_target_health.py)."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch

from sslkit.monitoring.diagnostics import CollapseDetector, CollapseParams, effective_rank, feature_std, health_metrics
from sslkit.params import field_doc, validate
from sslkit_plugins.losses.target_health import target_health


def test_feature_std_hand_case_collapse_and_isotropic() -> None:
    # Rows normalise to e1 and e2; each dimension takes the values {1, 0}: unbiased std 1/sqrt(2).
    assert feature_std(torch.tensor([[2.0, 0.0], [0.0, 5.0]])).item() == pytest.approx(1 / math.sqrt(2))
    assert feature_std(torch.ones(32, 16) * 3.0).item() == pytest.approx(0.0, abs=1e-6)
    torch.manual_seed(0)
    dim = 64
    assert feature_std(torch.randn(4096, dim)).item() == pytest.approx(1 / math.sqrt(dim), rel=0.03)


def test_effective_rank_of_equal_singular_values_is_the_rank() -> None:
    torch.manual_seed(0)
    u, _ = torch.linalg.qr(torch.randn(50, 50))
    v, _ = torch.linalg.qr(torch.randn(20, 20))
    for r in (1, 3, 7, 20):
        matrix = 2.5 * u[:, :r] @ v[:, :r].T
        assert effective_rank(matrix).item() == pytest.approx(r, rel=1e-4)
    # Singular values (3, 1): p = (3/4, 1/4).
    expected = math.exp(-(0.75 * math.log(0.75) + 0.25 * math.log(0.25)))
    matrix = 3.0 * u[:, :1] @ v[:, :1].T + u[:, 1:2] @ v[:, 1:2].T
    assert effective_rank(matrix).item() == pytest.approx(expected, rel=1e-4)
    assert effective_rank(torch.ones(10, 6)).item() == pytest.approx(1.0, abs=1e-4)


def test_health_metrics_returns_zero_dim_tensors_under_the_detector_names() -> None:
    torch.manual_seed(0)
    metrics = health_metrics(torch.randn(8, 4))
    assert set(metrics) == {"feature_std", "feature_std_ratio", "effective_rank"}
    assert all(isinstance(v, torch.Tensor) and v.ndim == 0 for v in metrics.values())
    assert metrics["feature_std_ratio"].item() == pytest.approx(metrics["feature_std"].item() * 2.0)


def _values(probs: torch.Tensor, features: torch.Tensor) -> dict[str, float]:
    """What the engine hands the detector: a loss's target health and the CLS features' metrics."""
    return {k: v.item() for k, v in {**target_health(probs), **health_metrics(features)}.items()}


def _healthy() -> dict[str, float]:
    torch.manual_seed(1)
    probs = torch.softmax(torch.randn(256, 1024) / 0.1, dim=-1)
    return _values(probs, torch.randn(256, 64))


def test_healthy_random_batch_does_not_trip_the_detector() -> None:
    detector = CollapseDetector(CollapseParams(patience=1))
    assert [detector.check(_healthy(), step) for step in range(3)] == [[], [], []]


def test_collapsed_batches_trip_the_detector() -> None:
    k, m = 1024, 256
    identical = torch.randn(1, 64).expand(m, 64)
    cases = {
        "uniform collapse": _values(torch.full((m, k), 1.0 / k), torch.randn(m, 64)),
        "one-dimension collapse": _values(torch.eye(k)[torch.zeros(m, dtype=torch.long)], torch.randn(m, 64)),
        "representation collapse": _values(torch.softmax(torch.randn(m, k) / 0.1, -1), identical),
    }
    for expected, values in cases.items():
        warnings = CollapseDetector(CollapseParams(patience=1)).check(values, step=7)
        assert any(expected in w and w.startswith("step 7:") for w in warnings), (expected, warnings)
    uniform_warnings = CollapseDetector(CollapseParams(patience=1)).check(cases["uniform collapse"], 0)
    assert len(uniform_warnings) == 1  # the argmax of a flat distribution is not reported as well
    assert f"within 0 of ln K = {math.log(k):.2f}" in uniform_warnings[0]
    collapsed_features = CollapseDetector(CollapseParams(patience=1)).check(cases["representation collapse"], 0)
    assert any("dimensional collapse" in w for w in collapsed_features)  # identical rows: effective rank 1


def test_patience_counts_consecutive_checks_and_a_healthy_check_resets() -> None:
    collapsed = _values(torch.full((64, 100), 0.01), torch.randn(64, 8))
    detector = CollapseDetector(CollapseParams(patience=3))
    seen = [detector.check(collapsed, step) for step in range(4)]
    assert [bool(w) for w in seen] == [False, False, True, True]
    assert seen[2][0].endswith("(3 checks in a row)") and seen[3][0].endswith("(4 checks in a row)")
    assert detector.check(_healthy(), 4) == []
    assert [bool(detector.check(collapsed, step)) for step in range(5, 8)] == [False, False, True]


def test_min_step_prefixes_and_non_finite_values() -> None:
    detector = CollapseDetector(CollapseParams(patience=1, min_step=100))
    values = {
        "dino/teacher_entropy": 4.6,
        "dino/entropy_gap": 0.0,
        "ibot/teacher_entropy": 1.0,
        "ibot/entropy_gap": 3.6,
        "loss": float("nan"),
        "lr": 0.1,
    }
    assert detector.check(values, 99) == []
    warnings = detector.check(values, 100)
    assert len(warnings) == 2
    assert any(w.startswith("step 100: dino: teacher entropy 4.60") for w in warnings)
    assert any("loss is nan" in w for w in warnings)


def test_params_are_documented_and_validate_from_a_recipe_mapping() -> None:
    assert all(field_doc(f) for f in dataclasses.fields(CollapseParams))
    params = validate(CollapseParams, {"patience": 5, "min_effective_rank": 3.0})
    assert params == CollapseParams(patience=5, min_effective_rank=3.0)
