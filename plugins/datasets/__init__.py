"""Built-in datasets: ``synthetic`` (the embedded default), ``image_folder``, ``tar`` and ``shards``."""

from __future__ import annotations

import sslkit
from sslkit.hookspecs import Register
from sslkit_plugins.datasets.image_folder import ImageFolderDataset, ImageFolderParams
from sslkit_plugins.datasets.shards import ShardsDataset, ShardsParams
from sslkit_plugins.datasets.synthetic import SyntheticDataset, SyntheticParams
from sslkit_plugins.datasets.tar import TarDataset, TarParams


@sslkit.hookimpl
def register_datasets(register: Register) -> None:
    register(
        "synthetic",
        SyntheticDataset,
        SyntheticParams,
        summary="Procedurally drawn shapes and textures, labelled, generated on the fly (no files).",
    )
    register(
        "image_folder",
        ImageFolderDataset,
        ImageFolderParams,
        summary="Images in a directory, labelled by class sub-folder (unlabelled when flat).",
    )
    register(
        "tar", TarDataset, TarParams, summary="An ImageFolder tree read directly from an uncompressed .tar archive."
    )
    register(
        "shards",
        ShardsDataset,
        ShardsParams,
        summary="Many WebDataset-style tar shards (brace/glob patterns), indexed per shard on demand.",
    )
