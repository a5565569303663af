"""Linear probe: separable data, random labels, an independent autograd re-implementation."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

import sslkit.eval.linear as linear_module
from sslkit.eval.linear import linear_probe, stratified_split


def _clusters(n: int, num_classes: int, dim: int, noise: float, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    centres = torch.randn(num_classes, dim, generator=torch.Generator().manual_seed(100)) * 3.0
    labels = torch.randint(0, num_classes, (n,), generator=g)
    return centres[labels] + noise * torch.randn(n, dim, generator=g) + 7.0, labels


def test_linearly_separable_features_reach_full_accuracy() -> None:
    train_x, train_y = _clusters(600, 4, 8, 0.3, seed=0)
    test_x, test_y = _clusters(200, 4, 8, 0.3, seed=1)
    result = linear_probe(train_x, train_y, test_x, test_y, lrs=(0.01, 0.1), epochs=10, batch_size=64)
    assert result.test_top1 == 100.0
    assert result.val_top1 == 100.0
    assert result.test_top5 == 100.0  # 4 classes
    assert set(result.per_lr) == {0.01, 0.1}
    assert result.per_lr[result.best_lr] == max(result.per_lr.values())


def test_random_labels_give_chance_accuracy() -> None:
    g = torch.Generator().manual_seed(0)
    train_x, test_x = torch.randn(2000, 16, generator=g), torch.randn(2000, 16, generator=g)
    train_y, test_y = torch.randint(0, 10, (2000,), generator=g), torch.randint(0, 10, (2000,), generator=g)
    result = linear_probe(train_x, train_y, test_x, test_y, lrs=(0.01, 0.1), epochs=5, batch_size=128)
    # Chance is 10% (binomial std 0.67% over 2000 samples) and 50% for top-5.
    assert 7.0 < result.test_top1 < 13.0
    assert 45.0 < result.test_top5 < 55.0


def test_same_seed_same_result_and_the_seed_changes_the_split() -> None:
    train_x, train_y = _clusters(300, 5, 6, 3.0, seed=2)
    test_x, test_y = _clusters(100, 5, 6, 3.0, seed=3)
    kwargs = {"lrs": (0.003, 0.03), "epochs": 3, "batch_size": 32}
    first = linear_probe(train_x, train_y, test_x, test_y, seed=4, **kwargs)
    assert linear_probe(train_x, train_y, test_x, test_y, seed=4, **kwargs) == first
    splits = [stratified_split(train_y, 0.1, torch.Generator().manual_seed(s))[1] for s in (4, 5)]
    assert not torch.equal(*splits)


def test_stratified_split_takes_the_fraction_of_every_class() -> None:
    labels = torch.tensor([0] * 50 + [1] * 30 + [2] * 2 + [3] * 1)
    train, val = stratified_split(labels, 0.2, torch.Generator().manual_seed(0))
    assert torch.equal(torch.cat([train, val]).sort().values, torch.arange(83))
    counts = torch.bincount(labels[val], minlength=4).tolist()
    assert counts == [10, 6, 0, 0]  # round(0.2 * 2) = 0; a class is never emptied from training
    assert torch.bincount(labels[train], minlength=4).tolist() == [40, 24, 2, 1]


def test_matches_full_batch_sgd_with_momentum_and_cosine_schedule() -> None:
    """With one batch per epoch, the probe is plain full-batch SGD: re-implement it with autograd,
    torch.optim.SGD and a per-step cosine learning rate, and compare the predictions."""
    train_x, train_y = _clusters(400, 6, 10, 4.0, seed=5)
    test_x, test_y = _clusters(300, 6, 10, 4.0, seed=6)
    lr, epochs, wd = 0.5, 25, 0.01
    result = linear_probe(
        train_x, train_y, test_x, test_y, lrs=(lr,), epochs=epochs, batch_size=10_000, weight_decay=wd, seed=7
    )

    fit, _ = stratified_split(train_y, 0.1, torch.Generator().manual_seed(7))
    mean, std = train_x[fit].mean(0), train_x[fit].std(0)
    x, y = (train_x[fit] - mean) / std, train_y[fit]
    classifier = torch.nn.Linear(10, 6)
    torch.nn.init.zeros_(classifier.weight)
    torch.nn.init.zeros_(classifier.bias)
    optimizer = torch.optim.SGD(
        [{"params": [classifier.weight], "weight_decay": wd}, {"params": [classifier.bias], "weight_decay": 0.0}],
        lr=lr,
        momentum=0.9,
    )
    for step in range(epochs):
        for group in optimizer.param_groups:
            group["lr"] = lr * 0.5 * (1 + math.cos(math.pi * step / epochs))
        optimizer.zero_grad()
        F.cross_entropy(classifier(x), y).backward()
        optimizer.step()
    with torch.no_grad():
        logits = classifier((test_x - mean) / std)
    expected_top1 = 100.0 * (logits.argmax(1) == test_y).float().mean().item()
    expected_top5 = 100.0 * (logits.topk(5, dim=1).indices == test_y[:, None]).any(1).float().mean().item()
    assert 40.0 < expected_top1 < 95.0  # a non-trivial case
    assert result.test_top1 == pytest.approx(expected_top1, abs=0.34)  # at most one borderline sample
    assert result.test_top5 == pytest.approx(expected_top5, abs=0.34)


def test_rejects_bad_arguments() -> None:
    x, y = torch.randn(20, 3), torch.arange(20) % 2
    with pytest.raises(ValueError, match="val_fraction"):
        linear_probe(x, y, x, y, val_fraction=0.0)
    with pytest.raises(ValueError, match="lrs"):
        linear_probe(x, y, x, y, lrs=())


def test_evaluation_in_chunks_gives_the_same_accuracies(monkeypatch: pytest.MonkeyPatch) -> None:
    train_x, train_y = _clusters(300, 7, 6, 3.0, seed=8)
    test_x, test_y = _clusters(101, 7, 6, 3.0, seed=9)
    kwargs = {"lrs": (0.01, 0.1, 1.0), "epochs": 3, "batch_size": 50}
    whole = linear_probe(train_x, train_y, test_x, test_y, **kwargs)
    monkeypatch.setattr(linear_module, "EVAL_CHUNK", 7)
    assert linear_probe(train_x, train_y, test_x, test_y, **kwargs) == whole
    assert 0.0 < whole.test_top1 < whole.test_top5 < 100.0
