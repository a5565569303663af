"""Step masks are drawn for the global batch: every process sees its own slice of the same draw."""

from __future__ import annotations

import torch

from sslkit.engine.masking import step_masks
from sslkit.registry import create


def test_masks_do_not_depend_on_the_number_of_processes() -> None:
    policy, masker = create("crop_policy", "random_fraction"), create("masker", "block")
    kwargs = dict(seed=3, step=11, n_global=2, global_batch=8, grid=(4, 4))
    sel1, masks1 = step_masks(policy, masker, rank=0, batch_size=8, **kwargs)
    parts = [step_masks(policy, masker, rank=r, batch_size=4, **kwargs) for r in range(2)]
    # crop-major: rows [c * B + b]; reassemble the two halves per crop
    for c in range(2):
        joined = torch.cat([p[1][c * 4:(c + 1) * 4] for p in parts])
        torch.testing.assert_close(joined, masks1[c * 8:(c + 1) * 8])
        joined_sel = torch.cat([p[0][c * 4:(c + 1) * 4] for p in parts])
        torch.testing.assert_close(joined_sel, sel1[c * 8:(c + 1) * 8])
    assert int(sel1.sum()) == 8  # random_fraction 0.5 of 16 crops
    assert masks1[~sel1].sum() == 0 and (masks1[sel1].sum(1) > 0).all()


def test_masks_change_with_the_step_and_repeat_with_the_seed() -> None:
    policy, masker = create("crop_policy", "random_fraction"), create("masker", "block")
    kwargs = dict(seed=3, n_global=2, global_batch=8, grid=(4, 4), rank=0, batch_size=8)
    a = step_masks(policy, masker, step=1, **kwargs)[1]
    b = step_masks(policy, masker, step=1, **kwargs)[1]
    c = step_masks(policy, masker, step=2, **kwargs)[1]
    assert torch.equal(a, b) and not torch.equal(a, c)
