"""A run started from an exported sslkit backbone (``model.backbone.init_from``) reproduces that
backbone's kNN at step 0 exactly: the export and the load lose nothing the evaluation sees."""

from __future__ import annotations

import json
from pathlib import Path

from sslkit.cli.main import main

QUICKSTART = Path(__file__).resolve().parents[2] / "recipes" / "quickstart.yaml"
SMALL = ["data.dataset.size=32", "data.batch_size=8", "data.num_workers=0", "data.augmentation.n_local=2",
         "model.heads.dino.out_dim=64", "eval.train_data.size=200", "eval.test_data.size=100"]


def _evaluations(run: Path) -> dict[int, dict[str, float]]:
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    return {r["step"]: {k: v for k, v in r.items() if k.startswith("eval/")} for r in records
            if any(k.startswith("eval/") for k in r)}


def test_a_run_from_an_exported_backbone_starts_at_its_knn(tmp_path: Path) -> None:
    trained = tmp_path / "trained"
    assert main(["train", str(QUICKSTART), *SMALL, "train.max_steps=3", "train.checkpoint_every=3",
                 "eval.at_start=false", "--output-dir", str(trained)]) == 0
    final = _evaluations(trained)[3]
    exported = tmp_path / "backbone.safetensors"
    assert main(["export", "--checkpoint", str(trained), "--out", str(exported)]) == 0
    started = tmp_path / "started"
    assert main(["train", str(QUICKSTART), *SMALL, "train.max_steps=1", "eval.at_end=false",
                 f"model.backbone.init_from={exported}", "--output-dir", str(started)]) == 0
    at_start = _evaluations(started)[0]
    assert at_start == final and final["eval/knn_top1"] > 0
    report = json.loads((started / "init_report.json").read_text())
    assert report["loaded_tensors"] >= report["total_tensors"] - 1  # all but the mask token timm lacks
