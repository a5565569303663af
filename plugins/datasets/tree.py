"""ImageFolder trees: which files are images and which class each belongs to.

A tree is labelled when images sit in class sub-folders (``<class>/.../<file>``; sorted class
names give labels 0..C-1) and unlabelled (label -1) when the images sit directly in the root.
Shared by the ``image_folder`` dataset (a directory) and the ``tar`` dataset (an archive).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

log = logging.getLogger("sslkit")

DEFAULT_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".ppm", ".pgm", ".gif")


@dataclass(frozen=True)
class Tree:
    """Image paths (relative, '/'-separated, sorted), their labels and the class names."""

    paths: list[str]
    labels: list[int]
    classes: list[str]


def is_image(path: str, extensions: tuple[str, ...]) -> bool:
    return path.lower().endswith(tuple(e.lower() for e in extensions))


def index_tree(relative_paths: list[str], extensions: tuple[str, ...], where: str) -> Tree:
    """Build a :class:`Tree` from every file's path relative to the root.

    Raises ``ValueError`` (with a description of what was found under ``where``) when no file
    has an image extension. Images directly in the root are ignored, with a warning, when
    class sub-folders exist.
    """
    images = sorted(p for p in relative_paths if is_image(p, extensions))
    if not images:
        found = sorted(relative_paths)[:5]
        what = f"{len(relative_paths)} files, e.g. {', '.join(found)}" if found else "no files at all"
        raise ValueError(f"no images with extensions {', '.join(extensions)} in {where} ({what})")
    nested = [p for p in images if "/" in p]
    if not nested:
        return Tree(images, [-1] * len(images), [])
    loose = len(images) - len(nested)
    if loose:
        log.warning(
            "%s: ignoring %d image(s) directly in the root; using the %d in class sub-folders",
            where,
            loose,
            len(nested),
        )
    classes = sorted({p.split("/", 1)[0] for p in nested})
    label_of = {name: i for i, name in enumerate(classes)}
    return Tree(nested, [label_of[p.split("/", 1)[0]] for p in nested], classes)
