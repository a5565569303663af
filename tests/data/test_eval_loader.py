"""The evaluation loader: resize + centre crop + normalisation, in dataset order."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from sslkit.components import BuildContext
from sslkit.data import build_eval_loader
from sslkit.errors import SSLKitError
from sslkit_plugins.datasets.image_folder import ImageFolderDataset, ImageFolderParams
from sslkit_plugins.datasets.synthetic import SyntheticDataset, SyntheticParams


def test_batches_are_normalised_centre_crops_in_order() -> None:
    ds = SyntheticDataset(SyntheticParams(size=10, image_size=16), BuildContext())
    mean, std = (0.5, 0.4, 0.3), (0.2, 0.25, 0.5)
    loader = build_eval_loader(ds, image_size=16, batch_size=4, num_workers=0, mean=mean, std=std, crop_fraction=1.0)
    assert len(loader) == 3
    images, labels = zip(*loader, strict=True)
    assert [x.shape[0] for x in images] == [4, 4, 2] and torch.cat(labels).tolist() == [i % 10 for i in range(10)]
    first = torch.from_numpy(np.array(ds[0][0])).permute(2, 0, 1).float() / 255
    expected = (first - torch.tensor(mean).view(3, 1, 1)) / torch.tensor(std).view(3, 1, 1)
    assert torch.allclose(images[0][0], expected, atol=1e-5)


def test_loader_workers_change_nothing_but_speed() -> None:
    """Online evaluation reads with the recipe's ``data.num_workers``: the same batches, in the same order."""
    ds = SyntheticDataset(SyntheticParams(size=23, image_size=16), BuildContext())
    batches = {workers: list(build_eval_loader(ds, image_size=16, batch_size=4, num_workers=workers, mean=(0.5,) * 3,
                                               std=(0.25,) * 3, crop_fraction=1.0))
               for workers in (0, 2)}
    assert len(batches[0]) == len(batches[2]) == 6
    for (images_0, labels_0), (images_2, labels_2) in zip(batches[0], batches[2], strict=True):
        assert torch.equal(images_0, images_2) and torch.equal(labels_0, labels_2)


def test_resize_then_centre_crop(tmp_path: Path) -> None:
    pixels = np.zeros((40, 80, 3), dtype=np.uint8)
    pixels[:, 20:60] = 255  # a white band in the centre of a wide image
    (tmp_path / "c").mkdir()
    Image.fromarray(pixels).save(tmp_path / "c" / "wide.png")
    ds = ImageFolderDataset(ImageFolderParams(root=str(tmp_path)), BuildContext())
    loader = build_eval_loader(
        ds, image_size=14, batch_size=1, num_workers=0, mean=(0, 0, 0), std=(1, 1, 1), crop_fraction=0.875
    )  # shorter side -> 16, i.e. 16 x 32, crop the central 14 x 14
    ((images, labels),) = list(loader)
    assert images.shape == (1, 3, 14, 14) and labels.tolist() == [0]
    assert images[0, :, 1:-1, 1:-1].min() > 0.95  # the band is 16 px wide at this scale, centred


def test_undecodable_evaluation_image_is_an_error_naming_the_file(tmp_path: Path) -> None:
    (tmp_path / "c").mkdir()
    (tmp_path / "c" / "broken.png").write_text("nope")
    loader = build_eval_loader(
        ImageFolderDataset(ImageFolderParams(root=str(tmp_path)), BuildContext()),
        image_size=8,
        batch_size=1,
        num_workers=0,
        mean=(0, 0, 0),
        std=(1, 1, 1),
    )
    with pytest.raises(SSLKitError, match=r"broken\.png failed to decode"):
        list(loader)
