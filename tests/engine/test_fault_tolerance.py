"""Surviving faults: SIGKILL then re-run gives bit-identical weights, SIGTERM/SIGUSR1 save and exit 0,
non-finite losses stop the run without touching the last good checkpoint."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

import pytest
import torch
from torch import Tensor

import sslkit
from sslkit.components import BuildContext, Loss, StepContext
from sslkit.engine.checkpoint import list_checkpoints, load_checkpoint
from sslkit.engine.trainer import NonFiniteLossError, Trainer
from sslkit.outputs import Output, StepInputs
from sslkit.params import param
from sslkit.recipe import load_recipe
from sslkit.registry import Provider, get_registry

pytestmark = pytest.mark.slow


def _command(recipe: Path, overrides: list[str], out: Path) -> list[str]:
    return [sys.executable, "-m", "sslkit", "train", str(recipe), *overrides, "--output-dir", str(out)]


def _wait_for(predicate, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError("condition not reached")
        time.sleep(0.05)


def _assert_same_weights(a: Path, b: Path) -> None:
    first, second = load_checkpoint(a), load_checkpoint(b)
    assert first["step"] == second["step"]
    for part in ("student", "teacher"):
        assert first[part].keys() == second[part].keys()
        for key in first[part]:
            assert torch.equal(first[part][key], second[part][key]), f"{part}.{key} differs"


@pytest.mark.parametrize("workers", [0, 2])
def test_sigkill_then_rerun_equals_an_uninterrupted_run_bit_for_bit(tmp_path, quickstart, tiny_overrides,
                                                                     workers: int) -> None:
    overrides = [*tiny_overrides, f"data.num_workers={workers}", "train.max_steps=8",
                 "model.backbone.drop_path_rate=0.1",
                 "losses.ibot={name: ibot, head: dino}", "losses.koleo={name: koleo, weight: 0.1}"]
    reference, interrupted = tmp_path / "reference", tmp_path / "interrupted"
    subprocess.run(_command(quickstart, overrides, reference), check=True, capture_output=True)
    process = subprocess.Popen(_command(quickstart, overrides, interrupted), stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    _wait_for(lambda: len(list_checkpoints(interrupted)) >= 1)
    process.send_signal(signal.SIGKILL)
    process.wait()
    killed_at = list_checkpoints(interrupted)
    assert "step_00000008.pt" not in [p.name for p in killed_at], "the run finished before it could be killed"
    rerun = subprocess.run(_command(quickstart, overrides, interrupted), check=True, capture_output=True, text=True)
    _assert_same_weights(reference, interrupted)
    # a rerun from scratch would give the same weights: check that it continued from the last checkpoint
    summary = json.loads(rerun.stdout.strip().splitlines()[-1])
    last = int(killed_at[-1].name[5:13])
    assert summary["resumed_from"] == str(killed_at[-1]), summary
    assert (summary["start_step"], summary["steps_run"]) == (last, 8 - last), summary
    assert f"resumed from {killed_at[-1]} at step {last}" in rerun.stderr


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGUSR1])
def test_preemption_signal_saves_at_the_next_step_and_exits_zero(tmp_path, quickstart, tiny_overrides, sig) -> None:
    out = tmp_path / "run"
    overrides = [*tiny_overrides, "train.max_steps=200", "train.checkpoint_every=1000"]
    process = subprocess.Popen(_command(quickstart, overrides, out), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True)
    _wait_for(lambda: (out / "metrics.jsonl").exists() and len((out / "metrics.jsonl").read_text().splitlines()) >= 2)
    process.send_signal(sig)
    stdout, stderr = process.communicate(timeout=120)
    assert process.returncode == 0, stderr
    summary = json.loads(stdout.strip().splitlines()[-1])
    assert not summary["completed"] and 2 <= summary["step"] < 200
    assert summary["start_step"] == 0 and summary["steps_run"] == summary["step"]
    assert f"received {sig.name}" in stderr
    [checkpoint] = list_checkpoints(out)
    assert checkpoint.name == f"step_{summary['step']:08d}.pt"


@dataclass
class ExplodingParams:
    """Parameters of a loss that turns non-finite at a chosen step."""

    at_step: int = param(3, "Step at which the loss becomes non-finite.")
    value: float = param(float("nan"), "The non-finite value (nan or inf).")


class ExplodingLoss(Loss):
    """Mean student CLS feature, replaced by a non-finite value at one step (a fault injector)."""

    def __init__(self, params: ExplodingParams, ctx: BuildContext) -> None:
        super().__init__()
        self.params = params
        self.inputs = {"cls": Output("cls", model="student", crops="global")}

    def forward(self, inputs: StepInputs, ctx: StepContext) -> Tensor:
        value = inputs["cls"].mean() * 0.0
        return value + self.params.value if ctx.step >= self.params.at_step else value


@pytest.fixture
def exploding_loss():
    @sslkit.hookimpl
    def register_losses(register) -> None:
        register("exploding", ExplodingLoss, ExplodingParams)

    module = ModuleType("tests_explode")
    module.register_losses = register_losses  # type: ignore[attr-defined]
    provider = Provider("tests", "0", "tests_explode")
    registry = get_registry()
    registry.register_module(module, provider)
    yield
    registry.unregister_module(module, provider)


@pytest.mark.parametrize("value", ["nan", "inf", "-inf"])
def test_non_finite_loss_stops_and_keeps_the_last_good_checkpoint(tmp_path, quickstart, tiny_overrides,
                                                                  exploding_loss, value: str) -> None:
    out = tmp_path / "run"
    yaml_value = {"nan": ".nan", "inf": ".inf", "-inf": "-.inf"}[value]
    overrides = [*tiny_overrides, f"losses.boom={{name: exploding, at_step: 3, value: {yaml_value}}}"]
    trainer = Trainer(load_recipe(quickstart, overrides), out)
    with pytest.raises(NonFiniteLossError, match=r"non-finite loss at step 3: boom=(nan|inf|-inf)") as info:
        trainer.fit()
    good = list_checkpoints(out)
    assert [p.name for p in good] == ["step_00000002.pt"]
    assert "step_00000002.pt" in str(info.value)
    payload = load_checkpoint(good[-1])
    assert all(torch.isfinite(v).all() for v in payload["student"].values() if v.is_floating_point())


def test_non_finite_steps_can_be_skipped_up_to_a_limit(tmp_path, quickstart, tiny_overrides, exploding_loss) -> None:
    out = tmp_path / "run"
    overrides = [*tiny_overrides, "losses.boom={name: exploding, at_step: 4, value: .inf}",
                 "train.max_nonfinite_steps=2"]
    with pytest.raises(NonFiniteLossError, match="non-finite loss at step 6"):
        Trainer(load_recipe(quickstart, [*overrides, "train.max_steps=8"]), out).fit()
    result = Trainer(load_recipe(quickstart, overrides), tmp_path / "other").fit()
    assert result.completed and result.step == 6
