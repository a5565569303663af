"""The evaluation loader: deterministic resize + centre crop + normalisation, for feature extraction."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import torch
import torchvision.transforms.v2.functional as TF
from torch import Tensor
from torch.utils.data import DataLoader

from sslkit.components import ImageDataset
from sslkit.data.bad_files import DECODE_ERRORS, describe
from sslkit.errors import SSLKitError


class _EvalItems(torch.utils.data.Dataset[tuple[Tensor, int]]):
    """Item ``i`` -> (uint8 ``[3, S, S]``, label): shorter side resized, centre-cropped."""

    def __init__(self, dataset: ImageDataset, image_size: int, resize_size: int) -> None:
        self.dataset = dataset
        self.image_size = image_size
        self.resize_size = resize_size

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> tuple[Tensor, int]:
        try:
            image, label = self.dataset[index]
            image = image.convert("RGB")
        except DECODE_ERRORS as exc:
            raise SSLKitError(
                f"evaluation image {describe(self.dataset, index)} failed to decode: {type(exc).__name__}: {exc}"
            ) from None
        image = TF.resize(image, [self.resize_size], antialias=True)
        image = TF.center_crop(image, [self.image_size, self.image_size])
        return TF.pil_to_tensor(image), int(label)


class EvalLoader:
    """Iterable of ``(images [B, 3, S, S] float32 normalised, labels [B] int64)`` in dataset order.

    Images travel as uint8 and are normalised on ``device``; labels stay on the CPU.
    """

    def __init__(
        self,
        loader: DataLoader[tuple[Tensor, int]],
        mean: Sequence[float],
        std: Sequence[float],
        device: torch.device | str,
    ) -> None:
        self.loader = loader
        self.device = torch.device(device)
        self.mean = torch.tensor(mean, dtype=torch.float32, device=self.device).view(1, 3, 1, 1) * 255
        self.std = torch.tensor(std, dtype=torch.float32, device=self.device).view(1, 3, 1, 1) * 255

    def __len__(self) -> int:
        return len(self.loader)

    def __iter__(self) -> Iterator[tuple[Tensor, Tensor]]:
        for images, labels in self.loader:
            images = images.to(self.device, non_blocking=True).to(torch.float32)
            yield images.sub_(self.mean).div_(self.std), labels


def build_eval_loader(
    dataset: ImageDataset,
    *,
    image_size: int,
    batch_size: int,
    num_workers: int,
    mean: Sequence[float],
    std: Sequence[float],
    crop_fraction: float = 0.875,
    device: torch.device | str = "cpu",
) -> EvalLoader:
    """Batches of the whole dataset, in order, for feature extraction.

    Each image's shorter side is resized (antialiased) to ``round(image_size / crop_fraction)``
    (256 for 224 with the default 0.875; use 1.0 for images already at ``image_size``), then
    centre-cropped to ``image_size`` and normalised with ``mean``/``std`` (in [0, 1] units) on
    ``device``.
    A file that fails to decode raises :class:`~sslkit.errors.SSLKitError` naming it.
    """
    if not 0 < crop_fraction <= 1:
        raise ValueError(f"crop_fraction must be in (0, 1], got {crop_fraction}")
    resize_size = round(image_size / crop_fraction)
    loader = DataLoader(
        _EvalItems(dataset, image_size, resize_size),
        batch_size=batch_size,
        shuffle=False,
        num_workers=num_workers,
        pin_memory=torch.device(device).type == "cuda",
    )
    return EvalLoader(loader, mean, std, device)
