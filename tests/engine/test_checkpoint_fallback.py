"""Auto-resume falls back to the newest readable checkpoint when newer ones are damaged (e.g. a file
truncated by a power loss during a copy made outside sslkit), and says which file it skipped and why."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import torch

from sslkit.engine.checkpoint import list_checkpoints, load_checkpoint, load_newest_readable, save_checkpoint
from sslkit.engine.trainer import Trainer
from sslkit.errors import SSLKitError
from sslkit.recipe import load_recipe
from sslkit.testing import assert_resumed


def _truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def test_a_truncated_newest_checkpoint_is_skipped_and_the_run_resumes_from_the_previous(
        tmp_path, quickstart, tiny_overrides, caplog) -> None:
    out = tmp_path / "run"
    Trainer(load_recipe(quickstart, tiny_overrides), out).fit()  # checkpoints at steps 2, 4 and 6
    newest = list_checkpoints(out)[-1]
    finished = load_checkpoint(newest)
    _truncate(newest)
    with caplog.at_level(logging.WARNING, logger="sslkit"):
        result = Trainer(load_recipe(quickstart, tiny_overrides), out).fit()
    assert_resumed(result, from_step=4, steps_run=2)
    assert f"skipped an unreadable checkpoint, using the previous one: {newest} is not a readable sslkit " \
           "checkpoint (truncated" in caplog.text
    again = load_checkpoint(out)  # step 6 written anew: the same weights as the first run's
    assert Path(again["path"]) == newest
    for part in ("student", "teacher"):
        for key, value in finished[part].items():
            assert torch.equal(value, again[part][key]), f"{part}.{key}"


def test_no_readable_checkpoint_is_a_clear_error_naming_each_file(tmp_path: Path) -> None:
    for step in (2, 4):
        _truncate(save_checkpoint(tmp_path, step, {"x": torch.zeros(1000)}, keep=3))
    with pytest.raises(SSLKitError, match=r"no readable checkpoint in .*checkpoints to resume from: .*"
                                          r"step_00000004\.pt is not a readable .*step_00000002\.pt is not a readable"):
        load_newest_readable(tmp_path)


def test_the_newest_readable_checkpoint_is_returned_with_the_skipped_ones(tmp_path: Path) -> None:
    assert load_newest_readable(tmp_path) == (None, [])
    for step in (2, 4, 6):
        save_checkpoint(tmp_path, step, {"x": torch.full((1000,), float(step))}, keep=3)
    (tmp_path / "checkpoints" / "step_00000006.pt").write_bytes(b"")
    payload, skipped = load_newest_readable(tmp_path)
    assert payload is not None and payload["step"] == 4
    assert len(skipped) == 1 and "step_00000006.pt is not a readable sslkit checkpoint" in skipped[0]
