"""``sslkit data shard``: an image folder in, shards out that the ``shards`` dataset reads back exactly."""

from __future__ import annotations

import io
import json
import tarfile
from collections import Counter
from pathlib import Path

import pytest

from sslkit.cli.main import main
from sslkit.registry import create


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    """7 distinct files (JPEG extension, arbitrary bytes: the command copies, never decodes) in 2 classes."""
    root = tmp_path / "src" / "train"  # a wrapper folder, as in an extracted train.tar
    for c, name in enumerate(["cat", "dog"]):
        (root / name).mkdir(parents=True)
        for i in range(4 if c == 0 else 3):
            (root / name / f"{i}.JPG").write_bytes(f"{name}-{i}".encode() * (i + 1))
    return tmp_path / "src"


def shard(src: Path, dst: Path, capsys: pytest.CaptureFixture[str], *extra: str) -> dict:
    assert main(["data", "shard", str(src), str(dst), *extra]) == 0
    out, err = capsys.readouterr()
    assert "files/s" in err and "ETA" in err and "name: shards" in err
    return json.loads(out)


def contents(pattern: str) -> Counter:
    ds = create("dataset", "shards", path=pattern)
    return Counter((ds.read_bytes(i)[0], ds.read_bytes(i)[1]) for i in range(len(ds)))


def test_every_image_ends_up_exactly_once_with_its_label(folder: Path, tmp_path: Path,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    summary = shard(folder, tmp_path / "out", capsys, "--shard-size", "3")
    assert summary == {"pattern": str(tmp_path / "out" / "train-{000000..000002}.tar"), "shards": 3, "samples": 7,
                       "classes": ["cat", "dog"]}
    expected = Counter((p.read_bytes(), ["cat", "dog"].index(p.parent.name))
                       for p in (folder / "train").glob("*/*.JPG"))
    assert contents(summary["pattern"]) == expected
    assert create("dataset", "shards", path=summary["pattern"]).classes == ["cat", "dog"]
    names = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert names == ["classes.txt", "index.json", *[f"train-00000{s}.tar{x}" for s in range(3) for x in ("", ".idx")]]


def test_output_is_deterministic_and_shuffled_by_seed(folder: Path, tmp_path: Path,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    runs = [shard(folder, tmp_path / name, capsys, "--shard-size", "4", *extra)
            for name, extra in (("a", ()), ("b", ()), ("c", ("--seed", "5")), ("d", ("--no-shuffle",)))]
    files = [{p.name: p.read_bytes() for p in (tmp_path / name).iterdir()} for name in "abcd"]
    assert files[0] == files[1] and files[0] != files[2]
    ordered = create("dataset", "shards", path=runs[3]["pattern"])
    assert [ordered.read_bytes(i)[1] for i in range(7)] == [0, 0, 0, 0, 1, 1, 1]


def test_flat_folder_is_unlabelled(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "flat").mkdir()
    for i in range(3):
        (tmp_path / "flat" / f"{i}.png").write_bytes(b"png%d" % i)
    summary = shard(tmp_path / "flat", tmp_path / "out", capsys, "--shard-size", "10")
    assert summary["pattern"] == str(tmp_path / "out" / "train-000000.tar") and summary["classes"] == []
    assert contents(summary["pattern"]) == Counter({(b"png%d" % i, -1): 1 for i in range(3)})
    assert not (tmp_path / "out" / "classes.txt").exists()


def test_errors_for_missing_or_empty_source_and_non_empty_destination(folder: Path, tmp_path: Path,
                                                                      capsys: pytest.CaptureFixture[str]) -> None:
    def error(*args: str) -> str:
        assert main(["data", "shard", *args]) == 1
        return capsys.readouterr().err

    assert "source" in error(str(tmp_path / "nope"), str(tmp_path / "o"), "--shard-size", "2")
    assert "does not exist" in error(str(tmp_path / "nope"), str(tmp_path / "o"), "--shard-size", "2")
    (tmp_path / "empty").mkdir()
    assert "no images" in error(str(tmp_path / "empty"), str(tmp_path / "o"), "--shard-size", "2")
    assert "at least 1" in error(str(folder), str(tmp_path / "o"), "--shard-size", "0")
    shard(folder, tmp_path / "out", capsys, "--shard-size", "1")  # 7 shards
    (tmp_path / "out" / "notes.md").write_text("kept")
    assert "not empty" in error(str(folder), str(tmp_path / "out"), "--shard-size", "4")
    summary = shard(folder, tmp_path / "out", capsys, "--shard-size", "4", "--overwrite")
    left = sorted(p.name for p in (tmp_path / "out").glob("train-*.tar"))
    assert left == ["train-000000.tar", "train-000001.tar"] and (tmp_path / "out" / "notes.md").exists()
    assert sum(contents(summary["pattern"]).values()) == 7


def test_index_existing_webdataset_shards(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    long_key = "deep/" * 30 + "k"  # over 100 characters: a pax header precedes the member's own header
    for s in range(2):
        with tarfile.open(tmp_path / f"wds-{s}.tar", "w") as archive:  # Python's default format: pax
            for key, data in ((f"{long_key}{s}", b"a" * 700), (f"k{s}", b"b" * 5)):
                for ext, payload in (("jpg", data), ("cls", str(s).encode())):
                    info = tarfile.TarInfo(f"{key}.{ext}")
                    info.size = len(payload)
                    archive.addfile(info, io.BytesIO(payload))
    pattern = str(tmp_path / "wds-{0..1}.tar")
    before = create("dataset", "shards", path=pattern)
    assert main(["data", "index", pattern]) == 0
    assert json.loads(capsys.readouterr().out) == {"shards": 2, "samples": 4}
    after = create("dataset", "shards", path=pattern)
    assert before.indexed == [False, False] and after.indexed == [True, True]
    assert [after.read_bytes(i) for i in range(4)] == [before.read_bytes(i) for i in range(4)]
    assert after.read_bytes(0) == (b"a" * 700, 0) and after.describe(3).endswith("wds-1.tar:k1.jpg")
