"""Dataset ``image_folder``: images in a directory, labelled by class sub-folder."""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass

from PIL import Image

from sslkit.components import BuildContext
from sslkit.errors import SSLKitError
from sslkit.params import param
from sslkit_plugins.datasets.tree import DEFAULT_EXTENSIONS, index_tree

log = logging.getLogger("sslkit")


@dataclass
class ImageFolderParams:
    """Where the images are and which files count as images."""

    root: str = param(doc="Directory of class sub-folders (<root>/<class>/<image>) or of images (unlabelled).")
    extensions: tuple[str, ...] = param(DEFAULT_EXTENSIONS, "File extensions that count as images (case-insensitive).")


def _walk(root: str) -> list[str]:
    """Every file under ``root`` (relative, '/'-separated), following symbolic links to folders.

    A folder reached a second time (a symbolic link loop, or two links to one folder) is not
    listed again, with one warning naming a few of them: otherwise a loop would list its
    images once per level until the path grows too long.
    """
    relative: list[str] = []
    seen: set[tuple[int, int]] = set()
    repeated: list[str] = []
    for folder, dirs, files in os.walk(root, followlinks=True):
        stat = os.stat(folder)
        seen.add((stat.st_dev, stat.st_ino))
        kept = []
        for name in sorted(dirs):
            try:
                target = os.stat(os.path.join(folder, name))
            except OSError:  # a dangling link
                continue
            if (target.st_dev, target.st_ino) in seen:
                repeated.append(os.path.relpath(os.path.join(folder, name), root))
            else:
                kept.append(name)
                seen.add((target.st_dev, target.st_ino))
        dirs[:] = kept
        rel_folder = os.path.relpath(folder, root)
        for name in files:
            rel = name if rel_folder == "." else f"{rel_folder}/{name}"
            relative.append(rel.replace(os.sep, "/"))
    if repeated:
        log.warning("directory %s: %d folder(s) reached a second time through symbolic links (a loop?) were not "
                    "listed again: %s", root, len(repeated), ", ".join(repeated[:5]))
    return relative


class ImageFolderDataset:
    """Images under ``root``: ``<root>/<class>/.../<image>`` gives sorted class labels 0..C-1;
    images directly in ``root`` (no sub-folders) form an unlabelled dataset (label -1).

    Files are listed once, at construction; ``__getitem__`` decodes one image to RGB.
    """

    def __init__(self, params: ImageFolderParams, ctx: BuildContext) -> None:
        root = os.path.abspath(os.path.expanduser(params.root))
        if not os.path.isdir(root):
            what = "a file, not a directory" if os.path.exists(root) else "does not exist"
            raise SSLKitError(f"dataset image_folder: root {params.root!r} {what}")
        relative = _walk(root)
        try:
            tree = index_tree(relative, params.extensions, f"directory {root}")
        except ValueError as exc:
            raise SSLKitError(f"dataset image_folder: {exc}") from None
        self.root = root
        self.paths = tree.paths
        self.labels = tree.labels
        self.classes = tree.classes

    def __len__(self) -> int:
        return len(self.paths)

    def describe(self, index: int) -> str:
        """The file behind item ``index`` (for error messages)."""
        return os.path.join(self.root, self.paths[index])

    def __getitem__(self, index: int) -> tuple[Image.Image, int]:
        with Image.open(self.describe(index)) as image:
            return image.convert("RGB"), self.labels[index]
