"""Centering of teacher logits: targets from the current center, then the EMA update."""

from __future__ import annotations

import pytest
import torch

from sslkit.components import BuildContext
from sslkit_plugins.losses.teacher_targets import center_buffer, teacher_probabilities, updated_center


def test_centering_uses_the_center_and_the_update_is_a_new_tensor(naive_centered_softmax) -> None:
    torch.manual_seed(0)
    center = torch.randn(1, 5)
    old = center.clone()
    logits = torch.randn(7, 5)
    probs = teacher_probabilities(logits, 0.07, "centering", center)
    torch.testing.assert_close(probs.double(), naive_centered_softmax(logits, old, 0.07), rtol=1e-5, atol=1e-7)
    updated = updated_center(center, logits, 0.8)
    expected = [0.8 * float(old[0, k]) + 0.2 * sum(float(logits[b, k]) for b in range(7)) / 7 for k in range(5)]
    torch.testing.assert_close(updated, torch.tensor([expected]))
    assert torch.equal(center, old)  # the loss commits the update only for applied steps


def test_update_without_rows_keeps_the_center() -> None:
    center = torch.tensor([[1.0, -2.0, 3.0]])
    torch.testing.assert_close(updated_center(center, torch.zeros(0, 3), 0.9), torch.tensor([[1.0, -2.0, 3.0]]))


def test_sinkhorn_dispatch_leaves_the_center_alone() -> None:
    center = torch.zeros(1, 4)
    probs = teacher_probabilities(torch.randn(6, 4), 0.1, "sinkhorn_knopp", center)
    torch.testing.assert_close(probs.sum(dim=1), torch.ones(6))
    assert center.abs().sum() == 0


def test_center_buffer_size_comes_from_the_head() -> None:
    assert center_buffer("dino", "h", "centering", BuildContext(head_dims={"h": 9})).shape == (1, 9)
    assert center_buffer("dino", "h", "sinkhorn_knopp", BuildContext()) is None
    with pytest.raises(ValueError, match="output size of head 'h'"):
        center_buffer("dino", "h", "centering", BuildContext(head_dims={"other": 3}))
