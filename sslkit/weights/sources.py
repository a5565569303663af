"""Reading the weights a backbone is initialised from: a flat ``name -> tensor`` state dict.

Accepted sources: an sslkit run directory or checkpoint file (the teacher's backbone), a
``.safetensors`` file (an ``sslkit export``, a timm model), a ``.pth`` / ``.pt`` file (an official
DINOv2 release or training checkpoint, any state dict), or a Hugging Face ``transformers`` model
folder (``config.json`` with ``model.safetensors``, sharded or not). Training containers
(``teacher``, ``model``, ``state_dict``) are unwrapped and ``backbone.`` prefixes stripped (the
teacher's when both are present), as are ``module.`` / ``_orig_mod.`` wrappers. Nothing is
downloaded.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import torch
from torch import Tensor

from sslkit.engine.checkpoint import FORMAT as SSLKIT_FORMAT
from sslkit.engine.checkpoint import resolve_checkpoint
from sslkit.errors import SSLKitError

SourceKind = Literal["sslkit", "transformers", "file"]

#: Container keys tried, in order, when a checkpoint's top level holds no tensors.
_CONTAINERS = ("teacher", "model", "state_dict", "student")
_WRAPPER_PREFIX = re.compile(r"^(?:module\.|_orig_mod\.)+")
_HF_CONFIG = "config.json"
_HF_WEIGHTS = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin")
_SHOWN = 8


@dataclass
class SourceWeights:
    """The tensors read from ``path``; ``kind`` says what it was (an sslkit checkpoint, a Hugging Face
    folder, or another file) and ``file`` the file read (a run directory's latest checkpoint)."""

    path: Path
    kind: SourceKind
    file: Path
    state: dict[str, Tensor]


def read_weights(path: str | Path) -> SourceWeights:
    """The backbone tensors of ``path`` (see the module doc); :class:`SSLKitError` when it cannot be read."""
    source = Path(path).expanduser()
    if not source.exists():
        raise SSLKitError(f"init_from: {source} does not exist")
    if source.is_dir() and (source / _HF_CONFIG).is_file():
        file, state = _read_transformers_folder(source)
        return SourceWeights(source, "transformers", file, state)
    file = resolve_checkpoint(source) if source.is_dir() else source
    obj = _load_file(file)
    kind: SourceKind = "sslkit" if isinstance(obj, dict) and obj.get("format") == SSLKIT_FORMAT else "file"
    return SourceWeights(source, kind, file, _unwrap(obj, file))


def _load_file(file: Path) -> object:
    try:
        if file.suffix == ".safetensors":
            from safetensors.torch import load_file

            return load_file(str(file))
        return torch.load(file, map_location="cpu", weights_only=True)
    except Exception as exc:  # any reader failure is a bad user file
        raise SSLKitError(f"init_from: cannot read {file}: {type(exc).__name__}: {exc}") from None


def _unwrap(obj: object, file: Path) -> dict[str, Tensor]:
    while isinstance(obj, dict) and not any(isinstance(v, Tensor) for v in obj.values()):
        key = next((k for k in _CONTAINERS if k in obj), None)
        if key is None:
            raise SSLKitError(
                f"init_from: {file} holds no tensors at its top level nor under any of "
                f"{', '.join(_CONTAINERS)}; top-level keys: {listing(obj)}"
            )
        obj = obj[key]
    if not isinstance(obj, dict):
        raise SSLKitError(f"init_from: {file} does not hold a state dict (found {type(obj).__name__})")
    state = {str(k): v for k, v in obj.items() if isinstance(v, Tensor)}
    prefixes = sorted({k[: k.index("backbone.") + len("backbone.")] for k in state if "backbone." in k})
    if prefixes:
        prefix = next((p for p in prefixes if "teacher" in p), prefixes[0])
        state = {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}
    return {_WRAPPER_PREFIX.sub("", k): v for k, v in state.items()}


def _read_transformers_folder(folder: Path) -> tuple[Path, dict[str, Tensor]]:
    """A ``save_pretrained`` folder: its (possibly sharded) weights, with the task model's prefix
    (``dinov2.`` in ``Dinov2ForImageClassification``) removed from the base model's tensors."""
    weights = next((folder / name for name in _HF_WEIGHTS if (folder / name).is_file()), None)
    if weights is None:
        raise SSLKitError(
            f"init_from: Hugging Face folder {folder} has {_HF_CONFIG} but none of {', '.join(_HF_WEIGHTS)}"
        )
    if weights.name.endswith(".index.json"):
        try:
            shards = sorted(set(json.loads(weights.read_text(encoding="utf-8"))["weight_map"].values()))
        except (ValueError, KeyError, TypeError) as exc:
            raise SSLKitError(f"init_from: {weights} is not a safetensors index: {exc}") from None
        state: dict[str, Tensor] = {}
        for shard in shards:
            state.update(_unwrap(_load_file(folder / shard), folder / shard))
    else:
        state = _unwrap(_load_file(weights), weights)
    base = next((k[: k.index("embeddings.")] for k in state if "embeddings.patch_embeddings." in k), "")
    if base:
        state = {(k[len(base) :] if k.startswith(base) else k): v for k, v in state.items()}
    return weights, state


def listing(items: Iterable[object], shown: int = _SHOWN) -> str:
    """At most ``shown`` names of ``items``, then how many more."""
    names = [str(i) for i in items]
    more = f", ... (+{len(names) - shown} more)" if len(names) > shown else ""
    return ", ".join(names[:shown]) + more
