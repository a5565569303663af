"""Weighted k-nearest-neighbour classification of frozen features (Wu et al. 2018, eq. 7; DINO, Caron et al. 2021,
section 4.1: k = 20, T = 0.07).

The protocol of DINO (Caron et al., 2021, section 4.1 / appendix) and DINOv2: features are
L2-normalised; for a test sample ``x`` the ``k`` training samples with the highest cosine
similarity ``s_i`` vote for their class with weight ``exp(s_i / T)`` (``T = 0.07``); the
classes are ranked by their summed votes, giving top-1 and top-5 accuracy.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from sslkit.eval.labelled_features import checked_labels


def knn_classify(
    train_features: Tensor,
    train_labels: Tensor,
    test_features: Tensor,
    test_labels: Tensor,
    *,
    ks: Sequence[int] = (10, 20, 100, 200),
    temperature: float = 0.07,
    num_classes: int | None = None,
    chunk_size: int = 256,
) -> dict[int, dict[str, float]]:
    """kNN accuracy for every ``k`` in ``ks``: ``{k: {"top1": %, "top5": %}}``.

    Votes: class ``c`` scores ``sum_{i in top-k neighbours, y_i = c} exp(s_i / T)`` with ``s_i``
    the cosine similarity (computed as ``exp((s_i - s_max) / T)``, the same ranking without
    overflow at small ``T``). ``top5`` counts a hit when the true class is among the
    ``min(5, C)`` classes with the most votes *and* received at least one vote (so top-5 is not
    filled with arbitrary zero-vote classes when the neighbours span few classes). ``k`` larger
    than the training set is clipped to its size (the result stays under the requested ``k``).
    ``num_classes`` defaults to the largest label + 1.

    The test set is processed ``chunk_size`` rows at a time (peak memory about
    ``chunk_size * N_train`` floats), on the device of ``train_features``. Results are
    deterministic; ties between equally similar neighbours or equal votes are broken by
    ``torch.topk``.
    """
    train_labels, test_labels, num_classes = checked_labels(
        train_features, train_labels, test_features, test_labels, num_classes
    )
    if not ks or min(ks) < 1:
        raise ValueError(f"ks must be a non-empty list of positive integers, got {tuple(ks)}")
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
    device = train_features.device
    n_train = train_features.shape[0]
    clipped = {k: min(k, n_train) for k in ks}
    k_max = max(clipped.values())
    n_top = min(5, num_classes)

    train = F.normalize(train_features.float(), dim=1)
    correct = {k: torch.zeros(2, dtype=torch.int64, device=device) for k in ks}
    for start in range(0, test_features.shape[0], chunk_size):
        test = F.normalize(test_features[start : start + chunk_size].to(device).float(), dim=1)
        truth = test_labels[start : start + chunk_size]
        similarity, index = (test @ train.T).topk(k_max, dim=1)
        weight = ((similarity - similarity[:, :1]) / temperature).exp()
        neighbour_labels = train_labels[index]
        for k, k_used in clipped.items():
            votes = torch.zeros(test.shape[0], num_classes, device=device)
            votes.scatter_add_(1, neighbour_labels[:, :k_used], weight[:, :k_used])
            top_votes, ranked = votes.topk(n_top, dim=1)
            hits = (ranked == truth[:, None]) & (top_votes > 0)
            correct[k] += torch.stack([hits[:, 0].sum(), hits.any(dim=1).sum()])
    n_test = test_features.shape[0]
    return {k: {"top1": 100.0 * int(c[0]) / n_test, "top5": 100.0 * int(c[1]) / n_test} for k, c in correct.items()}
