"""Built-in multi-crop augmentations: ``kornia_multicrop`` (batched on the device, the default)
and ``torchvision_multicrop`` (per image in the loader workers)."""

from __future__ import annotations

import sslkit
from sslkit.hookspecs import Register
from sslkit_plugins.augmentations.kornia_multicrop import KorniaMultiCrop, KorniaMultiCropParams
from sslkit_plugins.augmentations.params import MultiCropParams
from sslkit_plugins.augmentations.torchvision_multicrop import TorchvisionMultiCrop


@sslkit.hookimpl
def register_augmentations(register: Register) -> None:
    register(
        "kornia_multicrop",
        KorniaMultiCrop,
        KorniaMultiCropParams,
        summary="DINOv2 multi-crop batched on the training device (workers only decode).",
    )
    register(
        "torchvision_multicrop",
        TorchvisionMultiCrop,
        MultiCropParams,
        summary="DINOv2 multi-crop per image in the loader workers with torchvision.",
    )
