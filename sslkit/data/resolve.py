"""Turn a path given on the command line into a dataset (``sslkit eval PATH``, ``data.dataset`` shortcuts).

A directory becomes an ``image_folder`` dataset and a ``.tar`` archive a ``tar`` dataset. When
the tree holds exactly one top-level folder and that folder holds the class folders (an
archive of ``train/<class>/<image>``, or a directory into which one was extracted), that
folder is used as the root, so the classes are the classes and not the split's name.
"""

from __future__ import annotations

import os

from sslkit import registry
from sslkit.components import ImageDataset
from sslkit.data.tar_index import tar_members
from sslkit.errors import SSLKitError


def _single_wrapper(names: list[str]) -> str | None:
    """The one top-level folder of relative file paths when every file is at least two levels below it."""
    tops = {name.split("/", 1)[0] for name in names}
    if len(tops) == 1 and names and all(name.count("/") >= 2 for name in names):
        return tops.pop()
    return None


def _directory_wrapper(root: str) -> str | None:
    entries = [e for e in os.scandir(root) if not e.name.startswith(".")]
    if len(entries) != 1 or not entries[0].is_dir():
        return None
    inner = [e for e in os.scandir(entries[0].path) if not e.name.startswith(".")]
    return entries[0].name if inner and all(e.is_dir() for e in inner) else None


def dataset_from_path(path: str) -> ImageDataset:
    """An ``image_folder`` (directory) or ``tar`` (archive) dataset for ``path`` (see the module doc)."""
    dataset: ImageDataset  # registry.create builds any kind, so it returns Any
    if os.path.isdir(path):
        wrapper = _directory_wrapper(path)
        dataset = registry.create("dataset", "image_folder", root=os.path.join(path, wrapper) if wrapper else path)
        return dataset
    if os.path.isfile(path) and path.lower().endswith(".tar"):
        dataset = registry.create("dataset", "tar", path=path, prefix=_single_wrapper(list(tar_members(path))))
        return dataset
    if not os.path.exists(path):
        raise SSLKitError(f"dataset path {path!r} does not exist")
    raise SSLKitError(f"dataset path {path!r} is neither a directory nor a .tar archive")
