"""Measurement helpers run inside a benchmark contender's process: wall and CPU time over timed
steps (this process and its DataLoader workers, read from ``/proc``), peak memory, and a
torch.profiler table of one step."""

from __future__ import annotations

import os
import resource
import time
from collections.abc import Callable
from typing import Any


def _child_pids() -> list[int]:
    """Direct children of this process (the DataLoader workers)."""
    me, pids = os.getpid(), []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as handle:
                fields = handle.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == me:
            pids.append(int(entry))
    return pids


def _cpu_seconds(pid: int) -> float:
    """User + system CPU time of ``pid`` (0 when it is gone)."""
    try:
        with open(f"/proc/{pid}/stat") as handle:
            fields = handle.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _private_mib(pid: int) -> float:
    """Private (unshared) resident memory of ``pid`` in MiB: what a forked worker adds."""
    try:
        with open(f"/proc/{pid}/smaps_rollup") as handle:
            lines = handle.read().splitlines()
    except OSError:
        return 0.0
    kib = sum(int(line.split()[1]) for line in lines if line.startswith(("Private_Clean:", "Private_Dirty:")))
    return kib / 1024


class Meter:
    """Wall time and CPU time (this process + its workers) over the timed steps."""

    def start(self) -> None:
        self.workers = _child_pids()
        self.cpu0 = self._cpu()
        self.t0 = time.perf_counter()

    def _cpu(self) -> float:
        times = os.times()
        return times.user + times.system + sum(_cpu_seconds(p) for p in self.workers)

    def stop(self, images: int, device: Any) -> dict[str, float]:
        import torch

        if device.type == "cuda":
            torch.cuda.synchronize(device)
        wall = time.perf_counter() - self.t0
        self.workers = sorted(set(self.workers) | set(_child_pids()))  # workers started during the timed steps
        cpu = self._cpu() - self.cpu0
        result = {
            "images_per_s": images / wall,
            "seconds": wall,
            "cpu_ms_per_image": 1000 * cpu / images,
            "host_peak_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            "workers_private_mib": sum(_private_mib(p) for p in self.workers),
        }
        if device.type == "cuda":
            result["cuda_peak_mib"] = torch.cuda.max_memory_allocated(device) / 2**20
        return result


def profile_step(run_step: Any, row_limit: int = 18) -> str:
    import torch
    from torch.profiler import ProfilerActivity, profile

    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if torch.cuda.is_available() else [])
    with profile(activities=activities) as prof:
        run_step()
    key = "self_cuda_time_total" if torch.cuda.is_available() else "self_cpu_time_total"
    return prof.key_averages().table(sort_by=key, row_limit=row_limit, max_name_column_width=48)


def time_steps(spec: dict[str, Any], step_loss: Callable[[int], Any], images_per_step: int,
                device: Any) -> dict[str, Any]:
    """``spec["warmup"]`` untimed then ``spec["steps"]`` timed calls of ``step_loss(step)`` (one
    optimizer step each, returning its loss tensor or ``None``, read only at the end so that no
    step waits for the device); the meter's figures plus the final loss, and a profile of one
    extra step when ``spec["profile"]``."""
    loss = None
    for step in range(spec["warmup"]):
        loss = step_loss(step)
    meter = Meter()
    meter.start()
    for step in range(spec["warmup"], spec["warmup"] + spec["steps"]):
        loss = step_loss(step)
    result = meter.stop(spec["steps"] * images_per_step, device)
    result["final_loss"] = float(loss) if loss is not None else float("nan")
    if spec["profile"]:
        step = spec["warmup"] + spec["steps"]
        result["profile"] = profile_step(lambda: step_loss(step))
    return result
