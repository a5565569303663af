"""Checkpoints that survive crashes: atomic writes, validation on load, the last K kept.

A checkpoint is one file ``checkpoints/step_000123.pt`` holding plain state dicts (loadable
with ``weights_only=True``): student, teacher, optimizer, loss buffers, RNG states, the step,
and the plugin providers' versions. It is written to a temporary file, fsynced, then renamed,
so a kill at any moment leaves the previous checkpoint intact. A file damaged outside sslkit
(e.g. truncated by a power loss during a copy) is reported as unreadable, and
:func:`load_newest_readable` falls back to the previous checkpoint.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import torch

from sslkit.errors import SSLKitError

FORMAT = "sslkit-checkpoint"
FORMAT_VERSION = 1
_NAME = re.compile(r"^step_(\d{8})\.pt$")


class UnreadableCheckpointError(SSLKitError):
    """A checkpoint file that cannot be loaded (truncated, corrupt) or is not an sslkit checkpoint."""


def checkpoint_dir(output_dir: Path) -> Path:
    return output_dir / "checkpoints"


def list_checkpoints(output_dir: Path) -> list[Path]:
    """Complete checkpoints of a run, oldest first (temporary files are ignored)."""
    folder = checkpoint_dir(output_dir)
    if not folder.is_dir():
        return []
    found = [p for p in folder.iterdir() if _NAME.match(p.name)]
    return sorted(found, key=lambda p: int(_NAME.match(p.name).group(1)))  # type: ignore[union-attr]


def save_checkpoint(output_dir: Path, step: int, state: dict[str, Any], keep: int) -> Path:
    """Write ``state`` atomically as the checkpoint of ``step`` and delete all but the last ``keep``."""
    folder = checkpoint_dir(output_dir)
    folder.mkdir(parents=True, exist_ok=True)
    final = folder / f"step_{step:08d}.pt"
    tmp = folder / f".step_{step:08d}.pt.tmp-{os.getpid()}"
    payload = {"format": FORMAT, "format_version": FORMAT_VERSION, "step": step, **state}
    with open(tmp, "wb") as handle:
        torch.save(payload, handle)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, final)
    dir_fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
    for old in list_checkpoints(output_dir)[:-keep]:
        old.unlink(missing_ok=True)
    return final


def resolve_checkpoint(path: Path) -> Path:
    """A checkpoint file from a file path or a run directory (its latest checkpoint)."""
    if path.is_dir():
        found = list_checkpoints(path.parent if path.name == "checkpoints" else path)
        if not found:
            raise SSLKitError(f"no checkpoint in {path} (expected {checkpoint_dir(path)}/step_*.pt)")
        return found[-1]
    if not path.exists():
        raise SSLKitError(f"checkpoint not found: {path}")
    return path


def load_checkpoint(path: Path) -> dict[str, Any]:
    """Load and validate a checkpoint file (``weights_only=True``); clear errors for bad files."""
    path = resolve_checkpoint(path)
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise UnreadableCheckpointError(
            f"{path} is not a readable sslkit checkpoint (truncated or foreign file?): "
            f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}") from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise UnreadableCheckpointError(f"{path} is not an sslkit checkpoint (no '{FORMAT}' marker); "
                                        "to start from foreign weights use the backbone's init_from parameter")
    if payload.get("format_version") != FORMAT_VERSION:
        raise SSLKitError(f"{path}: checkpoint format version {payload.get('format_version')} is not supported "
                          f"(this sslkit reads version {FORMAT_VERSION})")
    payload["path"] = str(path)
    return payload


def load_newest_readable(output_dir: Path) -> tuple[dict[str, Any] | None, list[str]]:
    """The newest checkpoint of a run that loads, and why each newer one was skipped.

    Returns ``(None, [])`` when the run has no checkpoint; raises :class:`SSLKitError` when it has
    some but none is readable (the message lists each file and its problem). Only unreadable files
    are skipped: a checkpoint of an unsupported format version is an error, not a fallback.
    """
    found = list_checkpoints(output_dir)
    skipped: list[str] = []
    for path in reversed(found):
        try:
            return load_checkpoint(path), skipped
        except UnreadableCheckpointError as exc:
            skipped.append(str(exc))
    if skipped:
        raise SSLKitError(f"no readable checkpoint in {checkpoint_dir(output_dir)} to resume from: "
                          + "; ".join(skipped)
                          + ". Restore a good copy, or move the checkpoints away to start from scratch")
    return None, skipped
