"""Dataset ``tar``: an ImageFolder tree read directly from an uncompressed ``.tar`` archive.

The archive's members are indexed once per process and archive (name -> data offset and size,
cached by :func:`sslkit.data.tar_index.tar_members`, which skips unsafe members: absolute
names, ``..`` components, links, devices; see :mod:`sslkit.data.tar_index`); reading an image
is one ``seek`` + ``read`` on a file handle that each process opens lazily for itself, so
DataLoader workers (forked or spawned) never share a file position.
"""

from __future__ import annotations

import io
import os
from dataclasses import dataclass
from typing import Any, BinaryIO

from PIL import Image

from sslkit.components import BuildContext
from sslkit.data.tar_index import normalise, tar_members
from sslkit.errors import SSLKitError
from sslkit.params import param
from sslkit_plugins.datasets.tree import DEFAULT_EXTENSIONS, index_tree


@dataclass
class TarParams:
    """Which archive, which folder inside it, and which members count as images."""

    path: str = param(doc="Path of the .tar archive (uncompressed: members are read by offset).")
    prefix: str | None = param(
        None, "Folder inside the archive that holds the tree (e.g. 'train'); null: the archive's root."
    )
    extensions: tuple[str, ...] = param(
        DEFAULT_EXTENSIONS, "Member extensions that count as images (case-insensitive)."
    )


class TarDataset:
    """Images of an ImageFolder tree inside a tar archive, labelled by class folder under ``prefix``."""

    def __init__(self, params: TarParams, ctx: BuildContext) -> None:
        path = os.path.abspath(os.path.expanduser(params.path))
        if not os.path.isfile(path):
            raise SSLKitError(f"dataset tar: archive {params.path!r} does not exist")
        prefix = normalise(params.prefix or "")
        members = tar_members(path)
        if prefix:
            members = {
                name[len(prefix) + 1 :]: location for name, location in members.items() if name.startswith(prefix + "/")
            }
        where = f"archive {path}" + (f" under {prefix!r}" if prefix else "")
        if not members and prefix:
            tops = sorted({name.split("/", 1)[0] for name in tar_members(path)})
            raise SSLKitError(f"dataset tar: no files in {where}; top-level entries: {', '.join(tops[:10])}")
        try:
            tree = index_tree(list(members), params.extensions, where)
        except ValueError as exc:
            raise SSLKitError(f"dataset tar: {exc}") from None
        self.path = path
        self.prefix = prefix
        self.names = tree.paths
        self.labels = tree.labels
        self.classes = tree.classes
        self._offsets = [members[name] for name in self.names]
        self._handle: BinaryIO | None = None
        self._handle_pid: int | None = None

    def __len__(self) -> int:
        return len(self.names)

    def describe(self, index: int) -> str:
        """The archive member behind item ``index`` (for error messages)."""
        member = f"{self.prefix}/{self.names[index]}" if self.prefix else self.names[index]
        return f"{self.path}:{member}"

    def read_bytes(self, index: int) -> bytes:
        if self._handle is None or self._handle_pid != os.getpid():
            self._handle = open(self.path, "rb")  # noqa: SIM115 - kept open for the life of the process
            self._handle_pid = os.getpid()
        offset, size = self._offsets[index]
        self._handle.seek(offset)
        return self._handle.read(size)

    def __getitem__(self, index: int) -> tuple[Image.Image, int]:
        with Image.open(io.BytesIO(self.read_bytes(index))) as image:
            return image.convert("RGB"), self.labels[index]

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_handle"], state["_handle_pid"] = None, None  # file handles do not pickle (spawned workers)
        return state
