"""`sslkit eval knn|linear` and `sslkit export` on a trained run (the CLI contract)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from sslkit.cli.main import main
from sslkit.engine.restore import load_backbone
from sslkit.registry import create

QUICKSTART = Path(__file__).resolve().parents[2] / "recipes" / "quickstart.yaml"
TINY = ["data.dataset.size=32", "data.batch_size=8", "data.num_workers=0", "data.augmentation.n_local=2",
        "model.heads.dino.out_dim=64", "train.max_steps=2", "train.checkpoint_every=2", "eval.at_start=false",
        "eval.at_end=false"]


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("run")
    assert main(["train", str(QUICKSTART), *TINY, "--output-dir", str(out)]) == 0
    return out


def _image_folder(root: Path, seed: int, size: int) -> Path:
    dataset = create("dataset", "synthetic", size=size, image_size=32, seed=seed)
    for i in range(size):
        image, label = dataset[i]
        folder = root / dataset.classes[label]
        folder.mkdir(parents=True, exist_ok=True)
        image.save(folder / f"{i:04d}.png")
    return root


def test_eval_knn_prints_json_with_top1(run_dir, tmp_path, capsys) -> None:
    train = _image_folder(tmp_path / "train", 1, 60)
    test = _image_folder(tmp_path / "test", 2, 30)
    code = main(["eval", "knn", "--checkpoint", str(run_dir), "--train-data", str(train), "--test-data", str(test),
                 "--json", "--num-workers", "0", "--k", "10", "20"])
    assert code == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert 0.0 <= result["top1"] <= 100.0 and result["k"] == 20 and result["step"] == 2
    assert set(result["results"]) == {"10", "20"}


def test_eval_linear_prints_json(run_dir, tmp_path, capsys) -> None:
    train = _image_folder(tmp_path / "train", 1, 60)
    test = _image_folder(tmp_path / "test", 2, 30)
    code = main(["eval", "linear", "--checkpoint", str(run_dir), "--train-data", str(train), "--test-data",
                 str(test), "--json", "--num-workers", "0", "--lrs", "0.01", "0.1"])
    assert code == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert 0.0 <= result["top1"] <= 100.0 and result["best_lr"] in (0.01, 0.1)


def test_eval_refuses_a_single_class_folder(run_dir, tmp_path, capsys) -> None:
    flat = tmp_path / "one" / "only"
    _image_folder(tmp_path / "src", 1, 10)
    flat.mkdir(parents=True)
    for png in (tmp_path / "src").rglob("*.png"):
        png.rename(flat / png.name)
    code = main(["eval", "knn", "--checkpoint", str(run_dir), "--train-data", str(tmp_path / "one"),
                 "--test-data", str(tmp_path / "one"), "--num-workers", "0"])
    assert code == 1
    assert "at least 2 class folders" in capsys.readouterr().err


def test_export_writes_timm_loadable_weights(run_dir, tmp_path, capsys) -> None:
    import timm

    out = tmp_path / "backbone.safetensors"
    assert main(["export", "--checkpoint", str(run_dir), "--out", str(out)]) == 0
    meta = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert meta["sslkit_which"] == "teacher" and meta["format"] == "timm"
    model = timm.create_model(meta["timm_model"], pretrained=True, pretrained_cfg_overlay={"file": str(out)},
                              img_size=int(meta["img_size"]), **json.loads(meta["timm_model_kwargs"]))
    model.eval()
    ours, _, _ = load_backbone(run_dir, "teacher")
    images = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        expected = ours(images).cls
        tokens = model.forward_features(images)
    torch.testing.assert_close(tokens[:, 0], expected, atol=1e-5, rtol=1e-5)


def test_missing_checkpoint_is_a_clear_error(tmp_path, capsys) -> None:
    assert main(["export", "--checkpoint", str(tmp_path), "--out", str(tmp_path / "x.safetensors")]) == 1
    assert "no checkpoint in" in capsys.readouterr().err


def test_export_formats_load_where_users_go_and_back_into_sslkit(run_dir, tmp_path, capsys) -> None:
    """`--format transformers` (AutoModel), `--format torchscript` (torch.export program) and the timm
    default give the run's backbone outputs; init_from of each export gives them exactly."""
    from sslkit.weights import initialise

    transformers = pytest.importorskip("transformers")
    ours, resolved, _ = load_backbone(run_dir, "teacher")
    images = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        expected = ours(images)
    hf = tmp_path / "hf"
    assert main(["export", "--checkpoint", str(run_dir), "--format", "transformers", "--out", str(hf)]) == 0
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["architecture"] == "Dinov2Model"
    model = transformers.AutoModel.from_pretrained(tmp_path / "hf").eval()
    with torch.no_grad():
        out = model(pixel_values=images)
    torch.testing.assert_close(out.pooler_output, expected.cls, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(out.last_hidden_state[:, 1:], expected.patches, atol=1e-5, rtol=1e-5)

    program_file = tmp_path / "backbone.pt2"
    assert main(["export", "--checkpoint", str(run_dir), "--format", "torchscript", "--out", str(program_file)]) == 0
    with torch.no_grad():
        cls, patches = torch.export.load(str(program_file)).module()(images)
    torch.testing.assert_close(cls, expected.cls, atol=1e-6, rtol=1e-6)
    torch.testing.assert_close(patches, expected.patches, atol=1e-6, rtol=1e-6)

    assert main(["export", "--checkpoint", str(run_dir), "--out", str(tmp_path / "b.safetensors")]) == 0
    spec = resolved.spec("model.backbone")
    for source in (tmp_path / "hf", tmp_path / "b.safetensors", run_dir):
        fresh = spec.component.factory(spec.params, None).eval()
        initialise(fresh, source, min_fraction=1.0 if source != tmp_path / "b.safetensors" else 0.9, log=None)
        with torch.no_grad():
            got = fresh(images)
        assert torch.equal(got.cls, expected.cls) and torch.equal(got.patches, expected.patches), source
