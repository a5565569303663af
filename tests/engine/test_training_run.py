"""End-to-end CPU runs: outputs of a run, resume by re-running, and the learning signal.

Training is deterministic, so a rerun that started over would end with the same weights as one
that resumed: every resume test also checks where the rerun started (:func:`assert_resumed`),
and one test shows that this check fails when resuming is switched off."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import yaml

from sslkit.cli.main import main
from sslkit.engine.checkpoint import list_checkpoints, load_checkpoint
from sslkit.engine.run_state import RunState
from sslkit.engine.trainer import Trainer
from sslkit.recipe import load_recipe
from sslkit.testing import assert_resumed


def test_a_run_writes_recipe_versions_metrics_events_and_checkpoints(tmp_path, quickstart, tiny_overrides,
                                                                    capsys) -> None:
    out = tmp_path / "run"
    assert main(["train", str(quickstart), *tiny_overrides, "--output-dir", str(out)]) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["completed"] and summary["step"] == 6
    assert summary["start_step"] == 0 and summary["steps_run"] == 6 and summary["resumed_from"] is None
    saved = yaml.safe_load((out / "recipe.yaml").read_text())
    assert saved["train"]["max_steps"] == 6 and saved["data"]["batch_size"] == 8
    versions = json.loads((out / "versions.json").read_text())
    assert versions["torch"] == torch.__version__ and versions["plugins"]["sslkit"] == versions["sslkit"]
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    steps = [r["step"] for r in records if "loss/total" in r]
    assert steps == [1, 2, 3, 4, 5, 6]
    for key in ("loss/dino", "perf/images_per_s", "schedule/momentum", "schedule/weight_decay", "optim/grad_norm"):
        assert key in records[-1], key
    assert any(k.startswith("lr/") for k in records[-1])
    assert list((out).glob("events.out.tfevents.*"))
    assert [p.name for p in list_checkpoints(out)] == ["step_00000002.pt", "step_00000004.pt", "step_00000006.pt"][-3:]


def test_rerunning_a_finished_run_resumes_and_does_nothing(tmp_path, quickstart, tiny_overrides) -> None:
    out = tmp_path / "run"
    resolved = load_recipe(quickstart, tiny_overrides)
    Trainer(resolved, out).fit()
    first = load_checkpoint(out)
    result = Trainer(load_recipe(quickstart, tiny_overrides), out).fit()
    assert result.step == 6
    assert_resumed(result, from_step=6, steps_run=0)
    again = load_checkpoint(out)
    for key, value in first["teacher"].items():
        assert torch.equal(value, again["teacher"][key])


def test_a_longer_run_continues_where_a_shorter_one_stopped(tmp_path, quickstart, tiny_overrides) -> None:
    out = tmp_path / "run"
    Trainer(load_recipe(quickstart, [*tiny_overrides, "train.max_steps=4"]), out).fit()
    result = Trainer(load_recipe(quickstart, [*tiny_overrides, "train.max_steps=6"]), out).fit()
    assert result.step == 6 and result.completed
    assert_resumed(result, from_step=4, steps_run=2)
    assert Path(load_checkpoint(out)["path"]).name == "step_00000006.pt"


def test_the_resume_check_fails_when_resuming_is_switched_off(tmp_path, quickstart, tiny_overrides,
                                                              monkeypatch) -> None:
    """The rerun from scratch still ends at step 6 with a checkpoint: only the reported start tells."""
    out = tmp_path / "run"
    Trainer(load_recipe(quickstart, [*tiny_overrides, "train.max_steps=4"]), out).fit()
    monkeypatch.setattr(RunState, "restore_latest", lambda self: 0)
    result = Trainer(load_recipe(quickstart, [*tiny_overrides, "train.max_steps=6"]), out).fit()
    assert result.step == 6 and result.completed
    with pytest.raises(AssertionError, match=r"should have resumed from step_00000004\.pt, but it loaded nothing"):
        assert_resumed(result, from_step=4, steps_run=2)
