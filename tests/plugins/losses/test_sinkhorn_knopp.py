"""Sinkhorn-Knopp teacher targets: the iteration, its marginals and its numerical safety."""

from __future__ import annotations

import pytest
import torch

from sslkit_plugins.losses.sinkhorn_knopp import sinkhorn_knopp


@pytest.mark.parametrize("iterations", [1, 3])
def test_matches_the_naive_iteration(naive_sinkhorn_knopp, iterations: int) -> None:
    torch.manual_seed(0)
    logits = torch.randn(6, 5) * 0.5
    q = sinkhorn_knopp(logits, 0.2, iterations)
    torch.testing.assert_close(q.double(), naive_sinkhorn_knopp(logits, 0.2, iterations), rtol=1e-5, atol=1e-6)


def test_marginals() -> None:
    torch.manual_seed(1)
    n, k = 12, 4
    logits = torch.randn(n, k)
    for iterations in (1, 3, 10):
        q = sinkhorn_knopp(logits, 0.5, iterations)
        assert q.dtype == torch.float32 and (q >= 0).all()
        # the last step normalises samples: every row is exactly a distribution
        torch.testing.assert_close(q.sum(dim=1), torch.ones(n))
    # column (prototype) sums approach B / K as the iterations converge
    q = sinkhorn_knopp(logits, 0.5, 200)
    torch.testing.assert_close(q.sum(dim=0), torch.full((k,), n / k), rtol=1e-4, atol=1e-4)
    few = sinkhorn_knopp(logits, 0.5, 1).sum(dim=0)
    assert (few - n / k).abs().max() > (q.sum(dim=0) - n / k).abs().max()


def test_result_is_a_diagonal_scaling_of_exp_logits() -> None:
    # Q = diag(a) exp(t / T) diag(b): log Q - t / T is a_i + b_k, so its double-centred version vanishes
    torch.manual_seed(2)
    logits = torch.randn(8, 5)
    r = torch.log(sinkhorn_knopp(logits, 0.3, 3).double()) - logits.double() / 0.3
    centred = r - r.mean(dim=0, keepdim=True) - r.mean(dim=1, keepdim=True) + r.mean()
    assert centred.abs().max() < 1e-4


def test_large_logits_do_not_overflow_and_a_global_shift_changes_nothing() -> None:
    torch.manual_seed(3)
    logits = torch.randn(10, 6)
    shifted = sinkhorn_knopp(logits + 8.0, 0.04, 3)  # exp(200) would overflow in float32
    assert torch.isfinite(shifted).all()
    torch.testing.assert_close(shifted, sinkhorn_knopp(logits, 0.04, 3), rtol=1e-3, atol=1e-5)


def test_no_gradient_and_empty_input() -> None:
    logits = torch.randn(4, 3, requires_grad=True)
    assert not sinkhorn_knopp(logits, 0.1).requires_grad
    assert sinkhorn_knopp(torch.zeros(0, 3), 0.1).shape == (0, 3)
    with pytest.raises(ValueError, match="iteration"):
        sinkhorn_knopp(logits, 0.1, 0)


@pytest.mark.parametrize("scale", [80.0, 159.0, 239.0, 600.0])
def test_equals_the_float64_iteration_where_linear_float32_underflows(naive_sinkhorn_knopp, scale: float) -> None:
    # logits / T spread over [-scale, scale]: from ~100 on, exp(t / T - max) underflows for whole
    # prototype columns in float32 and the linear-domain iteration divides 0 by 0
    torch.manual_seed(4)
    logits = torch.rand(12, 7) * 2 - 1
    logits[:, 3] -= 1.0  # one prototype far below the others for every sample
    q = sinkhorn_knopp(logits, 1.0 / scale, 3)
    assert torch.isfinite(q).all()
    torch.testing.assert_close(q.double(), naive_sinkhorn_knopp(logits, 1.0 / scale, 3), rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("scale", [1e3, 1e4])
def test_finite_with_rows_summing_to_one_for_huge_logits(scale: float) -> None:
    torch.manual_seed(5)
    logits = torch.randn(16, 9)
    q = sinkhorn_knopp(logits, 1.0 / scale, 3)
    assert torch.isfinite(q).all() and (q >= 0).all()
    torch.testing.assert_close(q.sum(dim=1), torch.ones(16))
