"""``sslkit ablate`` under SIGTERM/SIGUSR1: the current run stops with its checkpoint, the ablation
records where it stopped and exits 75 (EX_TEMPFAIL), and re-running the command resumes and
completes. A signal during a run's final evaluation (which the trainer lets finish) still stops
the ablation before the next run."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from sslkit.ablation import AblationRunner, load_ablation
from sslkit.ablation.records import read_metrics
from sslkit.cli.ablate_cmd import EXIT_PREEMPTED
from sslkit.cli.main import main
from sslkit.components import BuildContext
from sslkit.engine.checkpoint import list_checkpoints, load_checkpoint
from sslkit.params import param
from sslkit.testing import registered
from sslkit_plugins.datasets.synthetic import SyntheticDataset, SyntheticParams

pytestmark = pytest.mark.slow

QUICKSTART = Path(__file__).resolve().parents[2] / "recipes" / "quickstart.yaml"
STEPS = 12  # the signal is sent once the first checkpoint exists, 11 steps before the end

ABLATION = """\
recipe: {recipe}
overrides:
  data.batch_size: 8
  data.num_workers: 0
  data.dataset.size: 64
  data.augmentation.n_local: 2
  model.backbone.patch_size: 16
  model.heads.dino: {{name: dino, out_dim: 64, hidden_dim: 32, bottleneck_dim: 16}}
  train.max_steps: {steps}
  train.epoch_length: 4
  train.checkpoint_every: 1
  train.log_every: 1
  eval.at_start: false
  eval.every: 0
  eval.train_data: {{name: {eval_dataset}, num_classes: 2, size: 20, image_size: 32, seed: 1}}
  eval.test_data: {{name: synthetic, num_classes: 2, size: 10, image_size: 32, seed: 2}}
  eval.k: 3
variants:
  low_lr: {{optim.base_lr: 0.0001}}
  high_lr: {{optim.base_lr: 0.001}}
seeds: [0]
"""


def _write(tmp_path: Path, steps: int, eval_dataset: str = "synthetic") -> Path:
    path = tmp_path / "lr.yaml"
    path.write_text(ABLATION.format(recipe=QUICKSTART, steps=steps, eval_dataset=eval_dataset), encoding="utf-8")
    return path


def _state(run: Path) -> dict:
    return json.loads((run / "ablation.json").read_text())


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGUSR1])
def test_signal_stops_the_current_run_with_its_checkpoint_and_a_rerun_completes(tmp_path: Path, sig) -> None:
    path, out = _write(tmp_path, steps=STEPS), tmp_path / "out"
    first, second = out / "low_lr" / "seed_0", out / "high_lr" / "seed_0"
    command = [sys.executable, "-m", "sslkit", "ablate", str(path), "--output-dir", str(out)]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not list_checkpoints(first):
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            pytest.fail(f"the first run never saved a checkpoint: {process.communicate()[1][-3000:]}")
        time.sleep(0.05)
    process.send_signal(sig)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == EXIT_PREEMPTED, stderr
    assert f"stopped by {sig.name}; re-run the same command to continue" in stderr
    checkpoints = list_checkpoints(first)
    stopped = int(checkpoints[-1].stem.split("_")[-1])
    assert 1 <= stopped < STEPS, "the run finished before it could be stopped"
    assert load_checkpoint(first)["step"] == stopped
    assert _state(first)["stopped"] == {"step": stopped, "signal": sig.name} and _state(first)["sessions"] == 1
    assert not second.exists(), "the next run must not start after the signal"
    assert not (out / "summary.md").exists()  # no run finished yet: no summary

    assert main(["ablate", str(path), "--output-dir", str(out)]) == 0
    logs, _ = read_metrics(first / "metrics.jsonl")
    assert sorted(logs) == list(range(1, STEPS + 1))
    assert "stopped" not in _state(first) and _state(first)["sessions"] == 2
    assert list_checkpoints(second)[-1].name == f"step_{STEPS:08d}.pt"
    assert "| high_lr | `optim.base_lr=0.001` | 1 |" in (out / "summary.md").read_text()


@dataclass
class SignallingParams(SyntheticParams):
    """The synthetic dataset's parameters, plus the process that signals itself."""

    rank: int = param(-1, "Only the process of this RANK sends the signal (-1: every process).")


class SignallingDataset(SyntheticDataset):
    """Synthetic images; reading the first one sends SIGTERM to this process (once per instance)."""

    def __init__(self, params: SignallingParams, ctx: BuildContext) -> None:
        super().__init__(params, ctx)
        self.pending = params.rank in (-1, int(os.environ.get("RANK", "0")))

    def __getitem__(self, index: int):
        if self.pending:
            self.pending = False
            os.kill(os.getpid(), signal.SIGTERM)
        return super().__getitem__(index)


@pytest.fixture
def signalling_dataset():
    with registered("dataset", "signalling", SignallingDataset, SignallingParams):
        yield


def test_signal_during_a_final_evaluation_stops_before_the_next_run(tmp_path: Path, signalling_dataset,
                                                                     capfd) -> None:
    path, out = _write(tmp_path, steps=2, eval_dataset="signalling"), tmp_path / "out"
    first, second = out / "low_lr" / "seed_0", out / "high_lr" / "seed_0"
    assert main(["ablate", str(path), "--output-dir", str(out)]) == EXIT_PREEMPTED
    err = capfd.readouterr().err
    assert "received SIGTERM: stopping before run 2/2 (high_lr seed 0)" in err
    _, evals = read_metrics(first / "metrics.jsonl")
    assert 2 in evals and "stopped" not in _state(first)  # the first run finished, evaluation included
    assert not second.exists()
    assert "| low_lr | `optim.base_lr=0.0001` | 1 |" in (out / "summary.md").read_text()  # what exists so far

    # the re-run trains the second run; its final evaluation signals too, but nothing is left to stop
    assert main(["ablate", str(path), "--output-dir", str(out)]) == 0
    assert list_checkpoints(second)[-1].name == "step_00000002.pt"
    assert "| high_lr | `optim.base_lr=0.001` | 1 |" in (out / "summary.md").read_text()


def _ablate_worker(rank: int, port: int, path: str, out: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), WORLD_SIZE="2", RANK=str(rank),
                      LOCAL_RANK=str(rank))
    torch.set_num_threads(1)
    try:
        outcome = AblationRunner(load_ablation(Path(path)), Path(out)).run()
        result = {"completed": outcome.completed, "stop_signal": outcome.stop_signal}
        (Path(out) / f"outcome_{rank}.json").write_text(json.dumps(result), encoding="utf-8")
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()


def test_a_signal_on_one_process_stops_every_process_before_the_next_run(tmp_path: Path, signalling_dataset) -> None:
    """Under torchrun, rank 1 alone is signalled during the final evaluation: both processes stop
    before run 2 (agreed by an all-reduce); rank 0 starting it alone would wait for rank 1 forever."""
    path = _write(tmp_path, steps=2, eval_dataset="signalling")
    path.write_text(path.read_text().replace("name: signalling,", "name: signalling, rank: 1,"))
    out = tmp_path / "out"
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    context = mp.start_processes(_ablate_worker, args=(port, str(path), str(out)), nprocs=2, join=False,
                                 start_method="fork")
    deadline = time.monotonic() + 120
    while not context.join(timeout=1):
        if time.monotonic() > deadline:
            for process in context.processes:
                process.kill()
            pytest.fail("the processes did not stop together (one of them waits for the other)")
    outcomes = [json.loads((out / f"outcome_{rank}.json").read_text()) for rank in (0, 1)]
    assert outcomes == [{"completed": False, "stop_signal": "SIGTERM/SIGUSR1 on another process"},
                        {"completed": False, "stop_signal": "SIGTERM"}]
    assert list_checkpoints(out / "low_lr" / "seed_0")[-1].name == "step_00000002.pt"
    assert not (out / "high_lr" / "seed_0").exists()
