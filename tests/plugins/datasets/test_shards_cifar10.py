"""Dataset shards on real data: a CIFAR-10 subset sharded by ``sslkit data shard`` reads back exactly
(skipped when the shared data is absent)."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from sslkit.cli.main import main
from sslkit.data import dataset_from_path
from sslkit.registry import create

TEST_TAR = Path(__file__).resolve().parents[3].parent / "shared" / "data" / "cifar10" / "test.tar"

pytestmark = [
    pytest.mark.cifar10,
    pytest.mark.skipif(not TEST_TAR.is_file(), reason=f"{TEST_TAR} is absent"),
]


def test_a_sharded_cifar10_subset_holds_every_image_once_with_its_class(tmp_path: Path,
                                                                       capsys: pytest.CaptureFixture[str]) -> None:
    source = dataset_from_path(str(TEST_TAR))
    expected: Counter = Counter()
    for i in range(0, len(source), 20):  # 500 images, 50 per class
        target = tmp_path / "images" / source.names[i]
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(source.read_bytes(i))
        expected[(source.read_bytes(i), source.labels[i])] += 1
    assert main(["data", "shard", str(tmp_path / "images"), str(tmp_path / "shards"), "--shard-size", "128"]) == 0
    assert "train-{000000..000003}.tar" in capsys.readouterr().out
    ds = create("dataset", "shards", path=str(tmp_path / "shards" / "train-{000000..000003}.tar"), window_shards=2)
    assert ds.classes == source.classes and len(ds) == 500 and ds.counts.tolist() == [128, 128, 128, 116]
    assert Counter(ds.read_bytes(i) for i in range(len(ds))) == expected
    image, label = ds[0]
    assert image.size == (32, 32) and np.asarray(image).std() > 5 and 0 <= label < 10
