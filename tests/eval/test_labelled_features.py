"""Both evaluations reject inconsistent labelled feature sets with a message naming the problem."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch

from sslkit.eval.knn import knn_classify
from sslkit.eval.labelled_features import checked_labels
from sslkit.eval.linear import linear_probe


@pytest.mark.parametrize("evaluate", [knn_classify, linear_probe])
def test_rejects_inconsistent_inputs(evaluate: Callable[..., object]) -> None:
    x, y = torch.randn(4, 3), torch.tensor([0, 1, 0, 1])
    with pytest.raises(ValueError, match="widths differ"):
        evaluate(x, y, torch.randn(2, 5), torch.tensor([0, 1]))
    with pytest.raises(ValueError, match="num_classes"):
        evaluate(x, y, x, y, num_classes=1)
    with pytest.raises(ValueError, match=">= 0"):
        evaluate(x, torch.tensor([0, -1, 0, 1]), x, y)
    with pytest.raises(ValueError, match=r"test: expected features \[N, D\] and labels \[N\]"):
        evaluate(x, y, x, y[:3])


def test_labels_become_int64_and_classes_default_to_the_largest_label() -> None:
    x = torch.randn(3, 2)
    train, test, classes = checked_labels(x, torch.tensor([0, 4, 1], dtype=torch.int32), x, torch.tensor([2, 2, 0]),
                                          None)
    assert train.dtype == test.dtype == torch.int64
    assert classes == 5
    assert checked_labels(x, train, x, test, 7)[2] == 7
