"""A preemption signal that arrives while the online kNN evaluation runs: the evaluation finishes,
the run saves a checkpoint at the next step and exits 0 (``sslkit train``), nothing is lost or
corrupted, and re-running the command resumes from that checkpoint and completes.

The signal is sent by the evaluation dataset itself (a fault injector: the synthetic dataset
that signals its own process when its first image is read), so it lands during the evaluation
on every run, however fast or loaded the machine is.
"""

from __future__ import annotations

import json
import os
import signal
from dataclasses import dataclass
from pathlib import Path

import pytest

from sslkit.ablation.records import read_metrics
from sslkit.cli.main import main
from sslkit.components import BuildContext
from sslkit.engine.checkpoint import list_checkpoints, load_checkpoint
from sslkit.params import param
from sslkit.testing import registered
from sslkit_plugins.datasets.synthetic import SyntheticDataset, SyntheticParams

pytestmark = pytest.mark.slow


@dataclass
class SignallingParams(SyntheticParams):
    """The synthetic dataset's parameters, plus which signal to send."""

    signal: str = param("SIGTERM", "Signal sent to this process when the first image is read.")


class SignallingDataset(SyntheticDataset):
    """Synthetic images; reading the first one sends ``signal`` to this process (once per instance)."""

    def __init__(self, params: SignallingParams, ctx: BuildContext) -> None:
        super().__init__(params, ctx)
        self.pending = True

    def __getitem__(self, index: int):
        if self.pending:
            self.pending = False
            os.kill(os.getpid(), signal.Signals[self.params.signal])
        return super().__getitem__(index)


@pytest.fixture
def signalling_dataset():
    with registered("dataset", "signalling", SignallingDataset, SignallingParams):
        yield


def _train(quickstart: Path, overrides: list[str], out: Path, capsys) -> tuple[int, dict]:
    code = main(["train", str(quickstart), *overrides, "--output-dir", str(out)])
    return code, json.loads(capsys.readouterr().out.strip().splitlines()[-1])


@pytest.mark.parametrize("sig", ["SIGTERM", "SIGUSR1"])
def test_signal_during_evaluation_saves_at_the_next_step_and_resumes(
    tmp_path, quickstart, tiny_overrides, signalling_dataset, capsys, sig: str
) -> None:
    out = tmp_path / "run"
    evaluation = [
        "eval.every=2", "train.max_steps=7", "train.checkpoint_every=100", "eval.k=3",
        f"eval.train_data={{name: signalling, signal: {sig}, num_classes: 2, size: 20, image_size: 32, seed: 1}}",
        "eval.test_data={name: synthetic, num_classes: 2, size: 10, image_size: 32, seed: 2}",
    ]
    overrides = [*tiny_overrides, *evaluation]
    code, summary = _train(quickstart, overrides, out, capsys)
    assert code == 0
    # signalled during the evaluation of step 2: that evaluation finished, step 3 ran and was saved
    assert (summary["completed"], summary["step"], summary["start_step"]) == (False, 3, 0), summary
    assert [p.name for p in list_checkpoints(out)] == ["step_00000003.pt"]
    assert load_checkpoint(out)["step"] == 3
    logs, evals = read_metrics(out / "metrics.jsonl")
    assert sorted(evals) == [2] and set(evals[2]) == {"eval/knn_top1", "eval/knn_top5"}
    assert max(logs) == 3

    code, summary = _train(quickstart, overrides, out, capsys)  # a new dataset instance: it signals again
    assert code == 0
    assert (summary["completed"], summary["start_step"], summary["steps_run"]) == (False, 3, 2), summary
    assert summary["resumed_from"].endswith("step_00000003.pt")

    quiet = [o.replace(f"name: signalling, signal: {sig}", "name: synthetic") for o in overrides]
    code, summary = _train(quickstart, quiet, out, capsys)
    assert code == 0
    assert (summary["completed"], summary["start_step"], summary["step"]) == (True, 5, 7), summary
    logs, evals = read_metrics(out / "metrics.jsonl")
    assert sorted(evals) == [2, 4, 6] and sorted(logs) == list(range(1, 8))
