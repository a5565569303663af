"""``sslkit train RECIPE [KEY=VALUE ...] --output-dir DIR``."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from sslkit.recipe.stages import Stage, load_stages


def add_parser(sub: Any) -> None:
    p = sub.add_parser("train", help="train a recipe (resumes when DIR holds a checkpoint)",
                       description="Train RECIPE into DIR. Re-running the same command resumes from the last "
                                   "checkpoint in DIR. A recipe with stages trains each stage into DIR/<stage>, "
                                   "each continuing from the previous one (finished stages are skipped). Under "
                                   "torchrun, every process runs this command.")
    p.add_argument("recipe", help="recipe YAML file (or a run's recipe.yaml)")
    p.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="overrides (dotted keys, YAML values)")
    p.add_argument("--output-dir", "-o", required=True, type=Path, help="run directory (created if needed)")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    stages = load_stages(args.recipe, args.overrides, args.output_dir)  # every stage validated before any trains
    for stage in stages:
        if stage.name and _finished(stage):
            print(f"stage {stage.name}: already finished in {stage.output_dir}, skipped")
            continue
        if stage.name:
            print(f"stage {stage.name} -> {stage.output_dir}")
        completed = _train(stage)
        if not completed:
            return 0  # stopped by a signal: the next invocation resumes this stage
    return 0


def _finished(stage: Stage) -> bool:
    """Whether the stage's run directory holds its final checkpoint."""
    from sslkit.engine.checkpoint import list_checkpoints

    found = list_checkpoints(stage.output_dir) if stage.output_dir.exists() else []
    final = f"step_{stage.resolved.recipe.train.max_steps:08d}.pt"
    return any(path.name == final for path in found)


def _train(stage: Stage) -> bool:
    """Train one stage; print its summary; whether it reached its last step."""
    from sslkit.engine.trainer import Trainer

    resolved = stage.resolved
    trainer = Trainer(resolved, stage.output_dir)
    result = trainer.fit()
    if trainer.info.is_main:
        summary = {"output_dir": str(result.output_dir), "step": result.step, "completed": result.completed,
                   "start_step": result.start_step, "steps_run": result.steps_run,
                   "resumed_from": result.resumed_from,
                   **{f"loss/{k}": round(v, 5) for k, v in result.final_losses.items()},
                   **{f"eval/{k}": round(v, 3) for k, v in result.metrics.items()}}
        if "knn_top1" in result.metrics:
            initial = _initial_knn(result.output_dir)
            before = f" (untrained model: {initial:.2f}%)" if initial is not None else ""
            print(f"kNN top-1 (k={resolved.recipe.eval.k}) after {result.step} steps: "
                  f"{result.metrics['knn_top1']:.2f}%{before}")
        print(json.dumps({**({"stage": stage.name} if stage.name else {}), **summary}))  # machine-readable
    return result.completed


def _initial_knn(output_dir: Path) -> float | None:
    """kNN top-1 of the untrained model, when the run evaluated it (``eval.at_start``)."""
    path = output_dir / "metrics.jsonl"
    if not path.exists():
        return None
    for line in path.read_text(encoding="utf-8").splitlines():
        record = json.loads(line)
        if record.get("step") == 0 and "eval/knn_top1" in record:
            return float(record["eval/knn_top1"])
    return None
