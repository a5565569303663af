"""Dataset shards: brace/glob patterns, WebDataset sample naming, the counts index and lazy offsets."""

from __future__ import annotations

import io
import pickle
import tarfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from sslkit.data.shard_index import IMAGE_EXTENSIONS, LABEL_EXTENSIONS, read_shard_idx, scan_shard
from sslkit.data.shard_patterns import expand_braces, expand_shards
from sslkit.data.shard_writer import write_shards
from sslkit.errors import SSLKitError
from sslkit.registry import create


def png_bytes(value: int) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (8, 8), (value, 255 - value, 7)).save(buffer, format="PNG")  # lossless: exact pixels
    return buffer.getvalue()


def make_shard(path: Path, members: dict[str, bytes]) -> Path:
    with tarfile.open(path, "w") as archive:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return path


def pixel(image: Image.Image) -> int:
    return int(np.array(image)[0, 0, 0])


@pytest.fixture
def image_folder(tmp_path: Path) -> Path:
    """11 images in 3 class folders; the red channel of image (class c, number i) is 20 * c + i."""
    root = tmp_path / "images"
    for c, name in enumerate(["ant", "bee", "cat"]):
        (root / name).mkdir(parents=True)
        for i in range(4 if c < 2 else 3):
            (root / name / f"{i}.png").write_bytes(png_bytes(20 * c + i))
    return root


@pytest.fixture
def written(image_folder: Path, tmp_path: Path) -> Path:
    write_shards(str(image_folder), str(tmp_path / "shards"), shard_size=3)  # 4 shards: 3 + 3 + 3 + 2
    return tmp_path / "shards"


def test_braces_expand_ranges_with_padding_and_lists_as_a_product() -> None:
    assert expand_braces("s/t-{000008..000010}.tar") == ["s/t-000008.tar", "s/t-000009.tar", "s/t-000010.tar"]
    assert expand_braces("{a,b}-{0..1}") == ["a-0", "a-1", "b-0", "b-1"]
    assert expand_braces("{8..10}") == ["8", "9", "10"]
    with pytest.raises(SSLKitError, match=r"'x-\{3\.\.1\}'.*counts down"):
        expand_braces("x-{3..1}")
    with pytest.raises(SSLKitError, match="neither a range"):
        expand_braces("x-{3}")


def test_patterns_expand_sorted_and_errors_name_the_pattern(tmp_path: Path) -> None:
    for name in ["b-1.tar", "a-0.tar", "a-1.tar", "a-2.txt"]:
        (tmp_path / name).write_bytes(b"")
    found = expand_shards(f"{tmp_path}/a-*.tar {tmp_path}/{{b,a}}-1.tar")
    assert found == [str(tmp_path / n) for n in ["a-0.tar", "a-1.tar", "b-1.tar"]]
    with pytest.raises(SSLKitError, match=r"'.*/c-\*\.tar' matches no file \(.* holds a-0.tar"):
        expand_shards(f"{tmp_path}/c-*.tar")
    with pytest.raises(SSLKitError, match=r"2 of the 3 files it names do not exist: .*a-2.tar, .*a-3.tar"):
        expand_shards(f"{tmp_path}/a-{{1..3}}.tar")


def test_webdataset_members_grouped_by_key_with_labels(tmp_path: Path) -> None:
    make_shard(tmp_path / "s-0.tar", {
        "x/k1.png": png_bytes(10), "x/k1.cls": b"2\n", "x/k1.json": b"{}",
        "x/k2.jpeg.json": b"{}",  # no image member: skipped
        "x/k3.seg.png": png_bytes(99), "x/k3.png": png_bytes(30), "x/k3.label": b"0",  # 'seg.png' is not 'png'
    })
    make_shard(tmp_path / "s-1.tar", {"k4.webp.txt": b"x", "k4.png": png_bytes(40), "k4.txt": b" 1 "})
    ds = create("dataset", "shards", path=str(tmp_path / "s-{0..1}.tar"))
    assert len(ds) == 3 and ds.classes == ["0", "1", "2"]  # no classes file: derived from the largest label
    assert [(pixel(ds[i][0]), ds[i][1]) for i in range(3)] == [(10, 2), (30, 0), (40, 1)]
    assert ds.describe(1) == f"{tmp_path / 's-0.tar'}:x/k3.png"
    unlabelled = create("dataset", "shards", path=str(tmp_path / "s-*.tar"), label_extensions=[])
    assert [unlabelled[i][1] for i in range(3)] == [-1, -1, -1]


def test_unlabelled_shards_and_classes_file(tmp_path: Path) -> None:
    make_shard(tmp_path / "u.tar", {f"{i}.png": png_bytes(i) for i in range(3)})
    ds = create("dataset", "shards", path=str(tmp_path / "u.tar"))
    assert ds.classes == [] and [ds[i][1] for i in range(3)] == [-1, -1, -1]
    make_shard(tmp_path / "l.tar", {"a.png": png_bytes(1), "a.cls": b"1"})
    (tmp_path / "classes.txt").write_text("zero\none\n")
    assert create("dataset", "shards", path=str(tmp_path / "l.tar")).classes == ["zero", "one"]
    (tmp_path / "classes.txt").write_text("zero\n")
    with pytest.raises(SSLKitError, match=r"label 1 found but the classes file .* lists 1 classes"):
        create("dataset", "shards", path=str(tmp_path / "l.tar"))


def test_bad_labels_and_empty_shards_are_clear_errors(tmp_path: Path) -> None:
    make_shard(tmp_path / "t.tar", {"a.png": png_bytes(1), "a.txt": b"a caption"})
    with pytest.raises(SSLKitError, match=r"t.tar:a.txt holds b'a caption', not an integer class label"):
        create("dataset", "shards", path=str(tmp_path / "t.tar"))
    make_shard(tmp_path / "e.tar", {"a.json": b"{}"})
    with pytest.raises(SSLKitError, match="hold no sample with an image member"):
        create("dataset", "shards", path=str(tmp_path / "e.tar"))


def test_counts_index_and_header_scan_give_the_same_dataset(written: Path) -> None:
    pattern = str(written / "train-{000000..000003}.tar")
    indexed = create("dataset", "shards", path=pattern)
    for shard, count in zip(indexed.shards, indexed.counts.tolist(), strict=True):
        with open(shard, "rb") as handle:
            rows = read_shard_idx(shard, count, handle)
        assert np.array_equal(rows, scan_shard(shard, IMAGE_EXTENSIONS, LABEL_EXTENSIONS))
    (written / "index.json").unlink()
    scanned = create("dataset", "shards", path=pattern)
    assert indexed.indexed == [True] * 4 and scanned.indexed == [False] * 4
    assert len(indexed) == len(scanned) == 11 and indexed.classes == scanned.classes == ["ant", "bee", "cat"]
    assert all(indexed.read_bytes(i) == scanned.read_bytes(i) for i in range(11))


def test_a_shard_whose_size_changed_is_scanned_not_trusted(written: Path) -> None:
    shard = written / "train-000001.tar"
    with tarfile.open(shard, "a") as archive:  # one more sample (and padding), appended after indexing
        for name, data in (("extra.png", png_bytes(200)), ("extra.bin", bytes(20_000))):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    ds = create("dataset", "shards", path=str(written / "train-*.tar"))
    assert ds.indexed == [True, False, True, True] and len(ds) == 12
    assert 200 in [pixel(ds[i][0]) for i in range(3, 7)]


def test_an_index_written_for_other_contents_is_refused(written: Path, image_folder: Path) -> None:
    other = written.parent / "other"
    write_shards(str(image_folder), str(other), shard_size=3, seed=1)  # same sizes, other order
    (other / "train-000000.tar.idx").write_bytes((written / "train-000002.tar.idx").read_bytes())
    (other / "train-000000.tar").write_bytes(bytes(512) + (other / "train-000000.tar").read_bytes()[:-512])
    ds = create("dataset", "shards", path=str(other / "train-*.tar"))
    with pytest.raises(SSLKitError, match=r"does not match .*train-000000.tar"):
        ds[0]


def test_offsets_are_loaded_lazily_and_at_most_cache_shards_are_held(written: Path) -> None:
    (written / "train-000003.tar.idx").write_bytes(b"broken")  # construction must not read it
    ds = create("dataset", "shards", path=str(written / "train-*.tar"), cache_shards=2)
    assert ds.cached_shards == []
    ds[4]
    assert ds.cached_shards == [1]
    for i in (0, 7, 4):  # shards 0, 2, 1
        ds[i]
        assert len(ds.cached_shards) <= 2 and len(ds._handles) <= 2
    assert ds.cached_shards == [2, 1]
    with pytest.raises(SSLKitError, match=r"train-000003.tar.idx is not an index of 2 samples"):
        ds[10]


def test_pickled_copies_hold_no_handles_or_offsets_and_read_the_same(written: Path) -> None:
    ds = create("dataset", "shards", path=str(written / "train-*.tar"))
    expected = [ds.read_bytes(i) for i in range(11)]
    copy = pickle.loads(pickle.dumps(ds))
    assert copy.cached_shards == [] and not copy._handles
    assert [copy.read_bytes(i) for i in range(11)] == expected
