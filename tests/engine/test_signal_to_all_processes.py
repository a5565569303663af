"""A preemption signal sent to every process of a run, loader workers included (what Slurm does at
the time limit, and ``kill -TERM -PGID``): the workers ignore it, the main process saves a
checkpoint at the next step and exits 0 instead of crashing on a dead worker."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from sslkit.engine.checkpoint import list_checkpoints, load_checkpoint

pytestmark = pytest.mark.slow


def _children(pid: int) -> list[int]:
    """The processes whose parent is ``pid`` (read from /proc)."""
    found = []
    for entry in filter(str.isdigit, os.listdir("/proc")):
        try:
            stat = Path(f"/proc/{entry}/stat").read_text(encoding="utf-8")
        except OSError:  # the process ended meanwhile
            continue
        if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
            found.append(int(entry))
    return found


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGUSR1])
def test_signal_to_the_process_group_with_loader_workers_saves_and_exits_zero(tmp_path, quickstart,
                                                                               tiny_overrides, sig) -> None:
    out = tmp_path / "run"
    overrides = [*tiny_overrides, "data.num_workers=2", "train.max_steps=200", "train.checkpoint_every=1000"]
    command = [sys.executable, "-m", "sslkit", "train", str(quickstart), *overrides, "--output-dir", str(out)]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               start_new_session=True)  # its own process group, as a batch job step
    metrics = out / "metrics.jsonl"
    deadline = time.monotonic() + 120
    while not (metrics.exists() and len(metrics.read_text().splitlines()) >= 2):
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            pytest.fail(f"the run did not start training: {process.communicate()[1][-3000:]}")
        time.sleep(0.05)
    assert len(_children(process.pid)) >= 2, "the loader workers should be running"
    os.killpg(process.pid, sig)
    stdout, stderr = process.communicate(timeout=120)
    assert process.returncode == 0, stderr[-3000:]
    summary = json.loads(stdout.strip().splitlines()[-1])
    assert not summary["completed"] and 2 <= summary["step"] < 200
    assert [p.name for p in list_checkpoints(out)] == [f"step_{summary['step']:08d}.pt"]
    assert load_checkpoint(out)["step"] == summary["step"]
