"""Checkpoints: atomic writes, the last K kept, validation of truncated and foreign files."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from sslkit.engine.checkpoint import list_checkpoints, load_checkpoint, resolve_checkpoint, save_checkpoint
from sslkit.errors import SSLKitError


def test_save_keeps_the_last_k_and_loads_back(tmp_path: Path) -> None:
    for step in (2, 4, 6, 8):
        save_checkpoint(tmp_path, step, {"student": {"w": torch.full((2,), float(step))}}, keep=2)
    assert [p.name for p in list_checkpoints(tmp_path)] == ["step_00000006.pt", "step_00000008.pt"]
    payload = load_checkpoint(tmp_path)
    assert payload["step"] == 8
    torch.testing.assert_close(payload["student"]["w"], torch.full((2,), 8.0))
    assert resolve_checkpoint(tmp_path / "checkpoints") == tmp_path / "checkpoints" / "step_00000008.pt"


def test_leftover_temporary_files_are_ignored(tmp_path: Path) -> None:
    save_checkpoint(tmp_path, 1, {"x": torch.zeros(1)}, keep=3)
    (tmp_path / "checkpoints" / ".step_00000002.pt.tmp-123").write_bytes(b"half written")
    assert [p.name for p in list_checkpoints(tmp_path)] == ["step_00000001.pt"]


def test_truncated_file_gives_a_clear_error(tmp_path: Path) -> None:
    path = save_checkpoint(tmp_path, 1, {"x": torch.zeros(1000)}, keep=3)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(SSLKitError, match=r"step_00000001\.pt is not a readable sslkit checkpoint \(truncated"):
        load_checkpoint(path)


def test_foreign_file_gives_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "weights.pt"
    torch.save({"state_dict": {"w": torch.zeros(1)}}, path)
    with pytest.raises(SSLKitError, match="is not an sslkit checkpoint"):
        load_checkpoint(path)
    with pytest.raises(SSLKitError, match="no checkpoint in"):
        load_checkpoint(tmp_path)


def test_unsafe_pickles_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "evil.pt"
    torch.save({"format": "sslkit-checkpoint", "format_version": 1, "obj": object()}, path)
    with pytest.raises(SSLKitError, match="not a readable sslkit checkpoint"):
        load_checkpoint(path)
