"""Validation of the labelled feature sets that the kNN and linear evaluations receive."""

from __future__ import annotations

import torch
from torch import Tensor


def _check_pair(features: Tensor, labels: Tensor, name: str) -> None:
    if features.ndim != 2 or labels.ndim != 1 or features.shape[0] != labels.shape[0]:
        raise ValueError(
            f"{name}: expected features [N, D] and labels [N], got {tuple(features.shape)} and {tuple(labels.shape)}"
        )
    if features.shape[0] == 0:
        raise ValueError(f"{name}: no samples")
    if labels.min() < 0:
        raise ValueError(f"{name}: labels must be >= 0 (unlabelled samples cannot be evaluated)")


def checked_labels(
    train_features: Tensor, train_labels: Tensor, test_features: Tensor, test_labels: Tensor, num_classes: int | None
) -> tuple[Tensor, Tensor, int]:
    """Check shapes and label ranges; return both label sets as int64 on the features' device and
    the number of classes (``num_classes``, or the largest label + 1 when it is ``None``)."""
    _check_pair(train_features, train_labels, "train")
    _check_pair(test_features, test_labels, "test")
    if train_features.shape[1] != test_features.shape[1]:
        raise ValueError(f"feature widths differ: train {train_features.shape[1]}, test {test_features.shape[1]}")
    device = train_features.device
    train_labels = train_labels.to(device=device, dtype=torch.int64)
    test_labels = test_labels.to(device=device, dtype=torch.int64)
    largest = int(max(train_labels.max(), test_labels.max())) + 1
    num_classes = num_classes if num_classes is not None else largest
    if num_classes < largest:
        raise ValueError(f"num_classes={num_classes} but labels go up to {largest - 1}")
    return train_labels, test_labels, num_classes
