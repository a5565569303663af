"""kNN classification against hand-computed cases and an independent per-sample implementation."""

from __future__ import annotations

import math

import pytest
import torch

from sslkit.eval.knn import knn_classify


def _unit(angle: float) -> list[float]:
    return [math.cos(angle), math.sin(angle)]


def test_well_separated_clusters_are_classified_perfectly() -> None:
    torch.manual_seed(0)
    directions = torch.eye(8)[:4] * 10.0  # four orthogonal cluster centres
    train_labels = torch.arange(4).repeat_interleave(50)
    test_labels = torch.arange(4).repeat_interleave(25)
    train = directions[train_labels] + 0.5 * torch.randn(200, 8)
    test = directions[test_labels] + 0.5 * torch.randn(100, 8)
    result = knn_classify(train, train_labels, test, test_labels)
    assert set(result) == {10, 20, 100, 200}
    for k in result:
        assert result[k] == {"top1": 100.0, "top5": 100.0}  # 4 classes: top-5 = top-4 = 100%


def test_temperature_weighting_changes_the_vote() -> None:
    # One class-0 neighbour at cosine 1 against two class-1 neighbours at cosine 0.9 (k = 3):
    # class 0 wins iff exp(1 / T) > 2 exp(0.9 / T), i.e. T < 0.1 / ln 2 = 0.144.
    angle = math.acos(0.9)
    train = torch.tensor([_unit(0.0), _unit(angle), _unit(-angle), _unit(math.pi)])
    train_labels = torch.tensor([0, 1, 1, 0])
    test, test_labels = torch.tensor([_unit(0.0)]), torch.tensor([0])
    crossover = 0.1 / math.log(2)
    sharp = knn_classify(train, train_labels, test, test_labels, ks=(3,), temperature=crossover * 0.7)
    flat = knn_classify(train, train_labels, test, test_labels, ks=(3,), temperature=crossover * 1.4)
    assert sharp[3]["top1"] == 100.0  # weighted: the closest neighbour outweighs two farther ones
    assert flat[3]["top1"] == 0.0  # nearly unweighted: the majority (class 1) wins
    # With k = 1 only the nearest neighbour votes, whatever the temperature.
    assert knn_classify(train, train_labels, test, test_labels, ks=(1,), temperature=10.0)[1]["top1"] == 100.0


def test_top5_counts_the_true_class_among_the_five_best() -> None:
    # Seven classes; training sample c sits at angle 0.1 * c, so class c is ranked c-th by
    # similarity (and by vote, one neighbour per class) for a test point at angle 0.
    train = torch.tensor([_unit(0.1 * c) for c in range(7)])
    train_labels = torch.arange(7)
    test = torch.tensor([_unit(0.0), _unit(0.0), _unit(0.0)])
    test_labels = torch.tensor([0, 4, 5])  # ranked 1st, 5th, 6th
    result = knn_classify(train, train_labels, test, test_labels, ks=(7,))
    assert result[7]["top1"] == pytest.approx(100.0 / 3)
    assert result[7]["top5"] == pytest.approx(200.0 / 3)


def test_k_is_clipped_to_the_training_set_size() -> None:
    torch.manual_seed(1)
    train, train_labels = torch.randn(12, 5), torch.randint(0, 3, (12,))
    test, test_labels = torch.randn(30, 5), torch.randint(0, 3, (30,))
    result = knn_classify(train, train_labels, test, test_labels, ks=(12, 500))
    assert result[500] == result[12]


def _reference_knn(train, train_labels, test, test_labels, k, temperature, num_classes):
    """Per-sample loop written independently from the implementation."""
    top1 = top5 = 0
    train_n = train / train.norm(dim=1, keepdim=True)
    for x, y in zip(test, test_labels.tolist(), strict=True):
        sims = (train_n @ (x / x.norm())).tolist()
        nearest = sorted(range(len(sims)), key=lambda i: -sims[i])[:k]
        votes = [0.0] * num_classes
        for i in nearest:
            votes[int(train_labels[i])] += math.exp(sims[i] / temperature)
        ranking = sorted(range(num_classes), key=lambda c: -votes[c])
        top1 += ranking[0] == y
        top5 += y in [c for c in ranking[:5] if votes[c] > 0]
    return 100.0 * top1 / len(test), 100.0 * top5 / len(test)


def test_matches_an_independent_implementation_and_is_chunk_invariant() -> None:
    torch.manual_seed(2)
    num_classes = 8
    centres = torch.randn(num_classes, 16)
    train_labels = torch.randint(0, num_classes, (300,))
    test_labels = torch.randint(0, num_classes, (60,))
    train = centres[train_labels] + 3.0 * torch.randn(300, 16)
    test = centres[test_labels] + 3.0 * torch.randn(60, 16)
    ks = (1, 5, 20, 100)
    chunked = knn_classify(train, train_labels, test, test_labels, ks=ks, temperature=0.1, chunk_size=7)
    whole = knn_classify(train, train_labels, test, test_labels, ks=ks, temperature=0.1, chunk_size=1000)
    assert chunked == whole
    for k in ks:
        top1, top5 = _reference_knn(train, train_labels, test, test_labels, k, 0.1, num_classes)
        assert chunked[k]["top1"] == pytest.approx(top1)
        assert chunked[k]["top5"] == pytest.approx(top5)
    assert 0.0 < chunked[20]["top1"] < chunked[20]["top5"] < 100.0  # a non-trivial case


def test_feature_scale_does_not_matter_and_small_temperatures_do_not_overflow() -> None:
    torch.manual_seed(3)
    train, train_labels = torch.randn(50, 4), torch.randint(0, 5, (50,))
    test, test_labels = torch.randn(20, 4), torch.randint(0, 5, (20,))
    base = knn_classify(train, train_labels, test, test_labels, ks=(5,), temperature=0.001)
    scaled = knn_classify(train * 100.0, train_labels, test * 0.01, test_labels, ks=(5,), temperature=0.001)
    assert base == scaled
    assert all(math.isfinite(v) for v in base[5].values())
