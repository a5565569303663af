"""The ablation runner end to end on the embedded synthetic dataset: 2 variants x 2 seeds x 2 steps,
summary contents, plots, TensorBoard layout, and resuming after an interruption."""

from __future__ import annotations

import csv
import io
import json
import statistics
from pathlib import Path

import pytest

from sslkit.ablation import AblationRunner, load_ablation
from sslkit.ablation.records import read_metrics
from sslkit.cli.main import main
from sslkit.engine.checkpoint import list_checkpoints
from sslkit.errors import SSLKitError

QUICKSTART = Path(__file__).resolve().parents[2] / "recipes" / "quickstart.yaml"

# A tiny, fast version of the quickstart: ViT-tiny with 16 px patches (2 x 2 grid), small heads,
# 8 images per step, 2 local crops, evaluation on 2-class synthetic sets of 20 / 10 images.
TINY = """\
recipe: {recipe}
description: Learning rate, tiny smoke version.
overrides:
  data.batch_size: 8
  data.num_workers: 0
  data.dataset.size: 64
  data.augmentation.n_local: 2
  model.backbone.patch_size: 16
  model.heads.dino: {{name: dino, out_dim: 64, hidden_dim: 32, bottleneck_dim: 16}}
  train.max_steps: 2
  train.epoch_length: 2
  train.checkpoint_every: 1
  train.log_every: 1
  eval.at_start: false
  eval.train_data: {{name: synthetic, num_classes: 2, size: 20, image_size: 32, seed: 1}}
  eval.test_data: {{name: synthetic, num_classes: 2, size: 10, image_size: 32, seed: 2}}
  eval.k: 3
  eval.batch_size: 64
variants:
  low_lr: {{optim.base_lr: 0.0001}}
  high_lr: [optim.base_lr=0.001]
seeds: [0, 1]
eval: {{knn: true, linear: true, linear_epochs: 3, linear_lrs: [0.01, 0.1]}}
"""


def _metrics_state(output_dir: Path) -> dict[str, tuple[int, int]]:
    return {
        str(p.relative_to(output_dir)): (p.stat().st_mtime_ns, p.stat().st_size)
        for p in sorted(output_dir.glob("*/seed_*/metrics.jsonl"))
    }


@pytest.fixture(scope="module")
def finished(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """One complete ablation run (shared by the tests of this module: training is the slow part)."""
    root = tmp_path_factory.mktemp("ablation")
    path = root / "lr.yaml"
    path.write_text(TINY.format(recipe=QUICKSTART), encoding="utf-8")
    output = root / "out"
    assert main(["ablate", str(path), "--output-dir", str(output)]) == 0
    return path, output


def test_every_variant_and_seed_trains_into_its_own_run_directory(finished: tuple[Path, Path]) -> None:
    _, output = finished
    for variant in ("low_lr", "high_lr"):
        for seed in (0, 1):
            run = output / variant / f"seed_{seed}"
            assert [p.name for p in list_checkpoints(run)][-1] == "step_00000002.pt"
            recipe = (run / "recipe.yaml").read_text()
            assert f"seed: {seed}" in recipe and f"name: {variant}" in recipe
            state = json.loads((run / "ablation.json").read_text())
            assert state["sessions"] == 1 and state["wall_s"] > 0
            assert state["linear"]["settings"] == {"epochs": 3, "lrs": [0.01, 0.1], "patch_mean": False}
            assert 0.0 <= state["linear"]["top1"] <= 100.0 and state["linear"]["best_lr"] in (0.01, 0.1)


def test_summary_rows_hold_mean_and_std_of_the_runs(finished: tuple[Path, Path]) -> None:
    _, output = finished
    rows = {r["variant"]: r for r in csv.DictReader(io.StringIO((output / "summary.csv").read_text()))}
    assert list(rows) == ["low_lr", "high_lr"]
    assert rows["high_lr"]["overrides"] == "optim.base_lr=0.001"
    for variant, row in rows.items():
        finals, dinos, knn, linear = [], [], [], []
        for seed in (0, 1):
            run = output / variant / f"seed_{seed}"
            logs, evals = read_metrics(run / "metrics.jsonl")
            finals.append(logs[2]["loss/total"])
            dinos.append(logs[2]["loss/dino"])
            knn.append(evals[2]["eval/knn_top1"])
            linear.append(json.loads((run / "ablation.json").read_text())["linear"]["top1"])
        assert row["seeds"] == "0 1"
        assert float(row["loss/total_mean"]) == pytest.approx(statistics.fmean(finals))
        assert float(row["loss/total_std"]) == pytest.approx(statistics.stdev(finals))
        assert float(row["loss/dino_mean"]) == pytest.approx(statistics.fmean(dinos))
        assert float(row["knn_top1_mean"]) == pytest.approx(statistics.fmean(knn))
        assert float(row["knn_top1_std"]) == pytest.approx(statistics.stdev(knn))
        assert float(row["linear_top1_mean"]) == pytest.approx(statistics.fmean(linear))
        assert float(row["images_per_s_mean"]) > 0 and float(row["wall_s_mean"]) > 0
    markdown = (output / "summary.md").read_text()
    assert "| low_lr | `optim.base_lr=0.0001` | 2 |" in markdown
    assert "Learning rate, tiny smoke version." in markdown
    assert "linear top-1 (%)" in markdown
    for png in ("loss_dino.png", "loss_total.png", "accuracy.png"):
        assert (output / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert f"![{png}]({png})" in markdown


def _session_hparams(run_dir: Path) -> dict[str, object]:
    """The hparams of the TensorBoard session recorded in ``run_dir``."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from tensorboard.plugins.hparams import plugin_data_pb2

    accumulator = EventAccumulator(str(run_dir))
    accumulator.Reload()
    content = accumulator.PluginTagToContent("hparams")["_hparams_/session_start_info"]
    info = plugin_data_pb2.HParamsPluginData.FromString(content).session_start_info
    return {
        key: value.WhichOneof("kind") and getattr(value, value.WhichOneof("kind"))
        for key, value in info.hparams.items()
    }


def test_tensorboard_shows_one_run_per_seed_and_a_mean_run_per_variant(finished: tuple[Path, Path]) -> None:
    from tensorboard.backend.event_processing.event_multiplexer import EventMultiplexer

    _, output = finished
    multiplexer = EventMultiplexer()
    multiplexer.AddRunsFromDirectory(str(output))
    multiplexer.Reload()
    runs = multiplexer.Runs()
    expected = {f"{v}/{s}" for v in ("low_lr", "high_lr") for s in ("seed_0", "seed_1", "mean")}
    assert expected == set(runs)
    for run in expected:
        assert {"loss/total", "eval/knn_top1"} <= set(runs[run]["scalars"])
    mean = [e.value for e in multiplexer.Scalars("high_lr/mean", "loss/total")]
    seeds = [[e.value for e in multiplexer.Scalars(f"high_lr/seed_{s}", "loss/total")] for s in (0, 1)]
    assert mean == pytest.approx([statistics.fmean(pair) for pair in zip(*seeds, strict=True)], rel=1e-6)
    assert _session_hparams(output / "high_lr" / "seed_1")["name"] == "high_lr"
    mean_hparams = _session_hparams(output / "high_lr" / "mean")
    assert mean_hparams["variant"] == "high_lr" and mean_hparams["optim.base_lr"] == pytest.approx(0.001)


def test_rerun_skips_finished_runs_and_resumes_an_interrupted_one(finished: tuple[Path, Path]) -> None:
    path, output = finished
    interrupted = output / "high_lr" / "seed_1"
    list_checkpoints(interrupted)[-1].unlink()  # as if killed between the checkpoints of steps 1 and 2
    (interrupted / "ablation.json").unlink()
    before = _metrics_state(output)
    runner = AblationRunner(load_ablation(path), output)
    assert [(r.label, r.status, r.step) for r in runner.runs] == [
        ("low_lr seed 0", "done", 2),
        ("low_lr seed 1", "done", 2),
        ("high_lr seed 0", "done", 2),
        ("high_lr seed 1", "resume", 1),
    ]
    runner.write_summary()  # --summary-only while a run is unfinished: it is left out of the figures
    markdown = (output / "summary.md").read_text()
    assert "not finished, left out:** high_lr seed 1" in markdown
    assert "| high_lr | `optim.base_lr=0.001` | 1 |" in markdown
    outcome = runner.run()
    assert outcome.trained == ["high_lr seed 1"] and len(outcome.skipped) == 3 and outcome.completed
    after = _metrics_state(output)
    changed = {name for name in after if after[name] != before[name]}
    assert changed == {"high_lr/seed_1/metrics.jsonl"}
    assert [p.name for p in list_checkpoints(interrupted)][-1] == "step_00000002.pt"
    logs, evals = read_metrics(interrupted / "metrics.jsonl")
    assert max(logs) == 2 and 2 in evals
    assert json.loads((interrupted / "ablation.json").read_text())["sessions"] == 1
    assert "| high_lr | `optim.base_lr=0.001` | 2 |" in (output / "summary.md").read_text()


def test_a_run_directory_trained_with_another_recipe_is_not_reused(finished: tuple[Path, Path]) -> None:
    path, output = finished
    with pytest.raises(SSLKitError, match=r"different recipe \(train.max_steps: 2 -> 4"):
        AblationRunner(load_ablation(path, ["train.max_steps=4"]), output)


def test_a_diverging_variant_is_reported_and_the_others_still_run(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # An infinite learning rate turns the weights non-finite at the first update: the run stops at step 1.
    text = TINY.format(recipe=QUICKSTART).replace("high_lr: [optim.base_lr=0.001]", "exploding: {optim.base_lr: .inf}")
    path = tmp_path / "diverge.yaml"
    path.write_text(text.replace("seeds: [0, 1]", "seeds: [0]").replace("linear: true", "linear: false"))
    output = tmp_path / "out"
    assert main(["ablate", str(path), "--output-dir", str(output)]) == 1
    err = capsys.readouterr().err
    assert "exploding seed 0 diverged: non-finite loss at step 1" in err
    markdown = (output / "summary.md").read_text()
    assert "| low_lr | `optim.base_lr=0.0001` | 1 |" in markdown
    assert "| exploding | `optim.base_lr=inf` | 0 | - |" in markdown  # the variant's row, with no figures
    assert "not finished, left out:** exploding seed 0 (diverged: non-finite loss at step 1" in markdown
    assert list_checkpoints(output / "low_lr" / "seed_0")[-1].name == "step_00000002.pt"
