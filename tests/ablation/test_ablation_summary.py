"""Summary math and rendering: mean ± sample std over seeds, what-differs text, CSV/Markdown, records."""

from __future__ import annotations

import csv
import io
import json
import math
import statistics
from pathlib import Path

import numpy as np
import pytest

from sslkit.ablation.plots import mean_curve
from sslkit.ablation.records import RunRecord, read_metrics, read_run, write_ablation_state
from sslkit.ablation.spec import Override, Variant, load_ablation, render_value
from sslkit.ablation.summary import format_stat, mean_std, render_csv, render_markdown, summarise

QUICKSTART = Path(__file__).resolve().parents[2] / "recipes" / "quickstart.yaml"


def test_mean_std_is_the_sample_standard_deviation_over_finite_values() -> None:
    values = [71.5, 73.0, 70.25, 72.0]
    stat = mean_std([*values, math.nan])
    assert stat.n == 4
    assert stat.mean == pytest.approx(statistics.fmean(values))
    assert stat.std == pytest.approx(statistics.stdev(values))  # ddof = 1
    assert stat.std == pytest.approx(float(np.std(values, ddof=1)))


def test_mean_std_of_one_and_of_no_value() -> None:
    one = mean_std([5.0])
    assert (one.mean, one.n) == (5.0, 1) and math.isnan(one.std)
    none = mean_std([math.nan])
    assert none.n == 0 and math.isnan(none.mean)
    assert format_stat(one, 2) == "5.00 (n=1)"
    assert format_stat(none, 2) == "-"
    assert format_stat(mean_std([1.0, 2.0]), 3) == f"1.500 ± {statistics.stdev([1.0, 2.0]):.3f}"


def test_what_differs_renders_every_override_in_yaml_flow_style() -> None:
    variant = Variant(
        "ld",
        (
            Override("optim.param_groups", {"name": "dinov2", "layer_decay": 0.9}, "f:3"),
            Override("masking.masker.stratified", False, "f:4"),
            Override("model.backbone.init_from", None, "f:5"),
        ),
    )
    assert variant.describe() == (
        "optim.param_groups={name: dinov2, layer_decay: 0.9}, "
        "masking.masker.stratified=false, model.backbone.init_from=null"
    )
    assert Variant("plain", ()).describe() == "base recipe"
    assert render_value([0.1, True, "x"]) == "[0.1, true, x]"


def _ablation(tmp_path: Path):
    path = tmp_path / "cmp.yaml"
    path.write_text(
        f"recipe: {QUICKSTART}\ndescription: Compare two learning rates.\nvariants:\n"
        "  low: {optim.base_lr: 0.0001}\n  high: [optim.base_lr=0.001]\nseeds: [0, 1, 2]\n"
    )
    return load_ablation(path)


def _record(
    variant: str, seed: int, total: float, dino: float, knn: float | None, rate: float, wall: float
) -> RunRecord:
    metrics = {} if knn is None else {"knn_top1": knn}
    return RunRecord(
        variant, seed, {"total": total, "dino": dino}, {"total": {10: total + 1, 20: total}}, metrics, rate, wall, 20
    )


def test_summarise_computes_one_row_per_variant_in_file_order(tmp_path: Path) -> None:
    ablation = _ablation(tmp_path)
    records = [
        _record("high", 0, 5.0, 4.0, 40.0, 100.0, 60.0),
        _record("high", 1, 5.5, 4.5, 44.0, 110.0, 62.0),
        _record("high", 2, 6.5, 5.5, None, 90.0, 61.0),  # kNN missing for this seed
        _record("low", 0, 7.0, 6.0, 30.0, 120.0, 50.0),
    ]
    rows = summarise(ablation, records)
    assert [row.variant.name for row in rows] == ["low", "high"]
    low, high = rows
    assert high.seeds == (0, 1, 2)
    assert high.stats["loss/total"].mean == pytest.approx(17.0 / 3)
    assert high.stats["loss/total"].std == pytest.approx(statistics.stdev([5.0, 5.5, 6.5]))
    assert high.stats["loss/dino"].mean == pytest.approx(14.0 / 3)
    assert (high.stats["knn_top1"].n, high.stats["knn_top1"].mean) == (2, pytest.approx(42.0))
    assert high.stats["knn_top1"].std == pytest.approx(statistics.stdev([40.0, 44.0]))
    assert high.stats["images_per_s"].mean == pytest.approx(100.0)
    assert high.stats["linear_top1"].n == 0
    assert low.stats["loss/total"].n == 1 and math.isnan(low.stats["loss/total"].std)

    table = list(csv.DictReader(io.StringIO(render_csv(rows))))
    assert [r["variant"] for r in table] == ["low", "high"]
    assert table[1]["overrides"] == "optim.base_lr=0.001"
    assert table[1]["seeds"] == "0 1 2"
    assert float(table[1]["loss/total_mean"]) == pytest.approx(17.0 / 3)
    assert float(table[1]["loss/total_std"]) == pytest.approx(statistics.stdev([5.0, 5.5, 6.5]))
    assert float(table[1]["wall_s_mean"]) == pytest.approx(61.0)
    assert table[1]["knn_top1_n"] == "2"
    assert table[0]["loss/total_std"] == "" and table[0]["linear_top1_mean"] == ""

    markdown = render_markdown(ablation, rows, "runs/x", ["loss_total.png"])
    lines = markdown.splitlines()
    header = next(line for line in lines if line.startswith("| variant"))
    assert "loss/dino" in header and "loss/total" in header and "kNN top-1 (%)" in header
    assert "linear" not in header  # no run reported a linear probe
    high_line = next(line for line in lines if line.startswith("| high"))
    cells = [c.strip() for c in high_line.strip("|").split("|")]
    assert cells[1] == "`optim.base_lr=0.001`"
    assert cells[2] == "3"
    assert cells[header.strip("|").split("|").index(" loss/total ")] == (
        f"{17.0 / 3:.4f} ± {statistics.stdev([5.0, 5.5, 6.5]):.4f}"
    )
    assert f"42.00 ± {statistics.stdev([40.0, 44.0]):.2f}" in high_line
    assert "Compare two learning rates." in markdown
    assert "![loss_total.png](loss_total.png)" in markdown


def test_read_metrics_keeps_the_latest_record_of_a_step_and_skips_a_torn_line(tmp_path: Path) -> None:
    path = tmp_path / "metrics.jsonl"
    lines = [
        {"step": 1, "loss/total": 9.0, "perf/images_per_s": 10.0},
        {"step": 2, "loss/total": 8.0, "perf/images_per_s": 30.0},
        {"step": 2, "eval/knn_top1": 11.0},
        {"step": 2, "loss/total": 7.5, "perf/images_per_s": 20.0},  # logged again after a resume
        {"step": 3, "loss/total": 7.0, "loss/dino": 6.0, "perf/images_per_s": 40.0},
        {"step": 3, "eval/knn_top1": 12.5, "eval/knn_top5": 50.0},
    ]
    path.write_text("".join(json.dumps(r) + "\n" for r in lines) + '{"step": 4, "loss/to', encoding="utf-8")
    logs, evals = read_metrics(path)
    assert sorted(logs) == [1, 2, 3] and logs[2]["loss/total"] == 7.5
    assert evals[3] == {"eval/knn_top1": 12.5, "eval/knn_top5": 50.0}
    write_ablation_state(tmp_path, {"wall_s": 12.0, "linear": {"top1": 33.0, "top5": 80.0}})
    record = read_run(tmp_path, "v", 0)
    assert record is not None
    assert record.final_losses == {"total": 7.0, "dino": 6.0}
    assert record.loss_curves["total"] == {1: 9.0, 2: 7.5, 3: 7.0}
    assert record.metrics == {"knn_top1": 12.5, "knn_top5": 50.0, "linear_top1": 33.0, "linear_top5": 80.0}
    assert record.images_per_s == pytest.approx(statistics.median([10.0, 20.0, 40.0]))
    assert record.wall_s == 12.0 and record.steps == 3
    assert read_run(tmp_path / "missing", "v", 0) is None


def test_mean_curve_uses_the_steps_every_seed_logged() -> None:
    steps, mean, std = mean_curve([{1: 1.0, 2: 2.0, 3: 3.0}, {2: 4.0, 3: 5.0}])
    assert steps.tolist() == [2, 3]
    assert mean.tolist() == [3.0, 4.0]
    assert std.tolist() == pytest.approx([statistics.stdev([2.0, 4.0]), statistics.stdev([3.0, 5.0])])
    steps, mean, std = mean_curve([{5: 2.0}])
    assert (steps.tolist(), mean.tolist(), std.tolist()) == ([5], [2.0], [0.0])
