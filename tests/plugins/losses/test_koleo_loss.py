"""KoLeo loss against a direct, loop-based implementation of Sablayrolles et al. 2019, eq. 6 (per global crop)."""

from __future__ import annotations

import math

import pytest
import torch

from sslkit.components import BuildContext, Output, StepContext, StepInputs
from sslkit_plugins.losses.koleo import KoLeoLoss, KoLeoLossParams, koleo

D = 4


def step(batch: int, n_global: int = 2) -> StepContext:
    return StepContext(
        step=0, max_steps=10, n_global=n_global, n_local=0, batch_size=batch, global_batch_size=batch
    )


def outputs(cls: torch.Tensor) -> StepInputs:
    return StepInputs({"student": cls})


def naive_koleo(features: torch.Tensor, n_global: int, eps: float = 1e-8) -> float:
    """Per crop index: -mean_i log(||x_i - x_nn(i)|| + eps) with nn by inner product; mean over crops."""
    batch = features.shape[0] // n_global
    per_crop = []
    for c in range(n_global):
        xs = []
        for b in range(batch):
            v = [float(x) for x in features[c * batch + b]]
            norm = max(math.sqrt(sum(x * x for x in v)), eps)
            xs.append([x / norm for x in v])
        terms = []
        for i, xi in enumerate(xs):
            best, best_dot = None, -math.inf
            for j, xj in enumerate(xs):
                dot = sum(a * b for a, b in zip(xi, xj, strict=True))
                if j != i and dot > best_dot:
                    best, best_dot = j, dot
            distance = math.sqrt(sum((a - b) ** 2 for a, b in zip(xi, xs[best], strict=True)))
            terms.append(-math.log(distance + eps))
        per_crop.append(sum(terms) / len(terms))
    return sum(per_crop) / n_global


@pytest.mark.parametrize(("n_global", "batch"), [(2, 5), (1, 2), (3, 4)])
def test_matches_the_formula(n_global: int, batch: int) -> None:
    torch.manual_seed(batch)
    features = torch.randn(n_global * batch, D) * 3
    value = KoLeoLoss(KoLeoLossParams(), BuildContext())(outputs(features), step(batch, n_global))
    assert math.isclose(value.item(), naive_koleo(features, n_global), rel_tol=1e-5)


def test_crops_are_separate_sets() -> None:
    # the two global crops of an image are identical: pooled together every nearest neighbour would be
    # the other view (distance 0); per crop index the loss stays finite and small
    torch.manual_seed(0)
    view = torch.randn(4, D)
    value = KoLeoLoss(KoLeoLossParams(), BuildContext())(outputs(torch.cat([view, view])), step(4))
    assert math.isclose(value.item(), naive_koleo(view, 1), rel_tol=1e-5)
    assert value.item() < 5


def test_duplicates_give_minus_log_eps_and_finite_gradients() -> None:
    x = torch.tensor([[1.0, 0, 0, 0], [2.0, 0, 0, 0], [0, 1.0, 0, 0]], requires_grad=True)
    per_set = koleo(x.unsqueeze(0), eps=1e-8)
    expected = (-math.log(1e-8) * 2 - math.log(math.sqrt(2) + 1e-8)) / 3
    assert math.isclose(per_set.item(), expected, rel_tol=1e-6)
    per_set.sum().backward()
    assert torch.isfinite(x.grad).all()


def test_gradient_matches_the_direct_formula() -> None:
    torch.manual_seed(1)
    features = torch.randn(2 * 6, D, requires_grad=True)
    KoLeoLoss(KoLeoLossParams(), BuildContext())(outputs(features), step(6)).backward()
    reference = features.detach().clone().requires_grad_(True)
    terms = []
    for c in range(2):
        x = torch.nn.functional.normalize(reference[c * 6 : (c + 1) * 6], dim=-1, eps=1e-8)
        dots = x.detach() @ x.detach().T - 3 * torch.eye(6)
        nearest = dots.argmax(dim=1)
        terms.append(-torch.log((x - x[nearest]).norm(dim=1) + 1e-8).mean())
    (sum(terms) / 2).backward()
    torch.testing.assert_close(features.grad, reference.grad)


def test_spread_features_have_lower_loss() -> None:
    torch.manual_seed(2)
    spread = torch.eye(D).repeat(2, 1)  # per crop: D orthogonal directions
    clustered = torch.ones(2 * D, D) + 0.01 * torch.randn(2 * D, D)
    loss = KoLeoLoss(KoLeoLossParams(), BuildContext())
    assert loss(outputs(spread), step(D)) < loss(outputs(clustered), step(D))


@pytest.mark.parametrize("mode", ["local", "distributed"])
def test_single_sample_is_an_error(mode: str) -> None:
    loss = KoLeoLoss(KoLeoLossParams(mode=mode), BuildContext())
    with pytest.raises(ValueError, match="at least 2 samples") as info:
        loss(outputs(torch.randn(2, D)), step(1))
    assert ("mode: distributed" in str(info.value)) == (mode == "local")


def test_distributed_mode_in_one_process_equals_local_mode() -> None:
    torch.manual_seed(3)
    features = torch.randn(2 * 5, D)
    local = KoLeoLoss(KoLeoLossParams(), BuildContext())(outputs(features), step(5))
    dist = KoLeoLoss(KoLeoLossParams(mode="distributed", group_size=1), BuildContext())(outputs(features), step(5))
    torch.testing.assert_close(local, dist)
    expected = {"student": Output("cls", model="student", crops="global")}
    assert KoLeoLoss(KoLeoLossParams(), BuildContext()).inputs == expected
