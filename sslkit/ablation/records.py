"""What one finished run of an ablation reports, read back from its run directory.

A run directory holds ``metrics.jsonl`` (written by the trainer: one record per log step with
``loss/<term>`` and ``perf/images_per_s``, and evaluation records with ``eval/<metric>``) and
``ablation.json`` (written by the ablation runner: wall time and linear-probe results). A
resumed run may log a step twice (the steps between its last checkpoint and the interruption);
the later record wins.
"""

from __future__ import annotations

import json
import math
import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

METRICS_FILE = "metrics.jsonl"
ABLATION_FILE = "ablation.json"


@dataclass
class RunRecord:
    """The figures of one (variant, seed) run; missing figures are ``nan``."""

    variant: str
    seed: int
    final_losses: dict[str, float]  # term -> value at the last logged step ("total" included)
    loss_curves: dict[str, dict[int, float]]  # term -> {step: value}
    metrics: dict[str, float]  # knn_top1, knn_top5, linear_top1, linear_top5 (those measured)
    images_per_s: float  # median over the logged windows
    wall_s: float  # training + evaluation time summed over the runner's sessions
    steps: int  # last logged step
    eval_curves: dict[str, dict[int, float]] = field(default_factory=dict)  # e.g. knn_top1 -> {step: value}


def read_metrics(path: Path) -> tuple[dict[int, dict[str, float]], dict[int, dict[str, float]]]:
    """``(log records, eval records)`` of a ``metrics.jsonl``, each keyed by step (later records win).

    A truncated last line (a run killed while writing) is ignored.
    """
    logs: dict[int, dict[str, float]] = {}
    evals: dict[int, dict[str, float]] = {}
    if not path.exists():
        return logs, evals
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue
        if not isinstance(record, dict) or "step" not in record:
            continue
        step = int(record.pop("step"))
        target = evals if any(k.startswith("eval/") for k in record) else logs
        target.setdefault(step, {}).update(record)
    return logs, evals


def read_ablation_state(run_dir: Path) -> dict[str, Any]:
    """The runner's bookkeeping of a run (``{}`` when it has none yet)."""
    path = run_dir / ABLATION_FILE
    if not path.exists():
        return {}
    try:
        state = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError:
        return {}
    return state if isinstance(state, dict) else {}


def write_ablation_state(run_dir: Path, state: dict[str, Any]) -> None:
    """Replace the runner's bookkeeping of a run (written to a temporary file, then renamed)."""
    run_dir.mkdir(parents=True, exist_ok=True)
    tmp = run_dir / f".{ABLATION_FILE}.tmp"
    tmp.write_text(json.dumps(state, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    tmp.replace(run_dir / ABLATION_FILE)


def read_run(run_dir: Path, variant: str, seed: int) -> RunRecord | None:
    """The record of the run in ``run_dir``, or ``None`` when it has logged nothing yet."""
    logs, evals = read_metrics(run_dir / METRICS_FILE)
    if not logs:
        return None
    last_step = max(logs)
    curves: dict[str, dict[int, float]] = {}
    for step in sorted(logs):
        for key, value in logs[step].items():
            if key.startswith("loss/"):
                curves.setdefault(key[len("loss/") :], {})[step] = float(value)
    final = {term: float(logs[last_step][f"loss/{term}"]) for term in curves if f"loss/{term}" in logs[last_step]}
    rates = [float(r["perf/images_per_s"]) for r in logs.values() if "perf/images_per_s" in r]
    eval_curves: dict[str, dict[int, float]] = {}
    for step in sorted(evals):
        for key, value in evals[step].items():
            eval_curves.setdefault(key[len("eval/") :], {})[step] = float(value)
    metrics: dict[str, float] = {}
    for name, curve in eval_curves.items():
        metrics[name] = curve[max(curve)]
    state = read_ablation_state(run_dir)
    for name, value in state.get("linear", {}).items():
        if name in ("top1", "top5"):
            metrics[f"linear_{name}"] = float(value)
    return RunRecord(
        variant=variant,
        seed=seed,
        final_losses=final,
        loss_curves=curves,
        metrics=metrics,
        images_per_s=statistics.median(rates) if rates else math.nan,
        wall_s=float(state.get("wall_s", math.nan)),
        steps=last_step,
        eval_curves=eval_curves,
    )
