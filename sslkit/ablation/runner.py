"""Running every (variant, seed) of an ablation, resumably, then writing the comparison.

Layout of the output directory ``DIR``::

    DIR/<variant>/seed_<s>/    a normal run directory (recipe.yaml, checkpoints/, metrics.jsonl,
                               TensorBoard events) plus ablation.json (wall time, linear probe)
    DIR/<variant>/mean/        TensorBoard run of the mean over seeds (see ablation.tensorboard)
    DIR/summary.md, summary.csv, loss_<term>.png, accuracy.png

Runs go one after the other in file order (variant by variant, seed by seed). Re-running the
same command skips finished runs (final checkpoint at ``train.max_steps`` and, when kNN is
reported, its final evaluation logged) and resumes an interrupted one from its last
checkpoint; a run directory trained with a different recipe is an error, never overwritten.

A ``SIGTERM``/``SIGUSR1`` stops the ablation at the next safe point: during a training, the
trainer saves a checkpoint at the next step and returns; between runs (building a trainer, a
linear probe, the summary) the runner's own handler notes it. No further run or probe starts;
the interrupted run's ``ablation.json`` records where and why it stopped, and the summary is
written from the runs finished so far (if any).
"""

from __future__ import annotations

import gc
import os
import signal
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TextIO

import yaml

from sslkit.ablation.records import (
    METRICS_FILE,
    RunRecord,
    read_ablation_state,
    read_metrics,
    read_run,
    write_ablation_state,
)
from sslkit.ablation.spec import Ablation
from sslkit.ablation.summary import loss_terms, render_csv, render_markdown, summarise
from sslkit.engine.checkpoint import list_checkpoints
from sslkit.engine.run_dir import RECIPE_FILE
from sslkit.errors import SSLKitError
from sslkit.monitoring.progress import format_duration
from sslkit.recipe import ResolvedRecipe
from sslkit.registry import Registry

Status = Literal["done", "resume", "new"]


@dataclass
class PlannedRun:
    """One (variant, seed) run: its directory, its recipe and what remains to do."""

    variant: str
    seed: int
    run_dir: Path
    resolved: ResolvedRecipe
    status: Status
    step: int  # step of the latest checkpoint (0 when none)

    @property
    def label(self) -> str:
        return f"{self.variant} seed {self.seed}"


@dataclass
class AblationOutcome:
    """What :meth:`AblationRunner.run` did and wrote."""

    trained: list[str] = field(default_factory=list)  # labels of runs trained or resumed in this call
    skipped: list[str] = field(default_factory=list)  # labels of runs already finished
    completed: bool = True  # False when a preemption signal stopped the ablation before its end
    stop_signal: str | None = None  # the signal that stopped it
    diverged: dict[str, str] = field(default_factory=dict)  # label -> error of runs stopped by a non-finite loss
    files: list[Path] = field(default_factory=list)  # summary files and plots


def _missing_label(run: PlannedRun) -> str:
    """A left-out run's label, with the reason when it diverged."""
    diverged = read_ablation_state(run.run_dir).get("diverged")
    return f"{run.label} (diverged: {diverged})" if diverged else run.label


def _flatten(data: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(data, dict):
        flat: dict[str, Any] = {}
        for key, value in data.items():
            flat.update(_flatten(value, f"{prefix}.{key}" if prefix else str(key)))
        return flat
    return {prefix: data}


def recipe_differences(saved: dict[str, Any], current: dict[str, Any]) -> list[str]:
    """``key: saved -> current`` for every resolved-recipe value that differs."""
    old, new = _flatten(saved), _flatten(yaml.safe_load(yaml.safe_dump(current)))
    return [
        f"{k}: {old.get(k, 'absent')} -> {new.get(k, 'absent')}"
        for k in sorted(set(old) | set(new))
        if old.get(k, "absent") != new.get(k, "absent")
    ]


def run_status(run_dir: Path, resolved: ResolvedRecipe, needs_final_eval: bool) -> tuple[Status, int]:
    """Whether the run in ``run_dir`` is finished, can resume (and from which step), or is new.

    Raises :class:`SSLKitError` when ``run_dir`` was trained with a different recipe.
    """
    recipe_file = run_dir / RECIPE_FILE
    checkpoints = list_checkpoints(run_dir)
    if recipe_file.exists() and checkpoints:
        saved = yaml.safe_load(recipe_file.read_text(encoding="utf-8")) or {}
        changed = recipe_differences(saved, resolved.data)
        if changed:
            shown = "; ".join(changed[:5]) + (f" (and {len(changed) - 5} more)" if len(changed) > 5 else "")
            raise SSLKitError(
                f"{run_dir} was trained with a different recipe ({shown}); use another --output-dir "
                "or delete that run directory to retrain it"
            )
    if not checkpoints:
        return "new", 0
    step = int(checkpoints[-1].stem.split("_")[-1])
    max_steps = resolved.recipe.train.max_steps
    if step < max_steps:
        return "resume", step
    if needs_final_eval:
        _, evals = read_metrics(run_dir / METRICS_FILE)
        if max_steps not in evals:
            return "resume", step  # stopped during the final evaluation: the trainer only evaluates
    return "done", step


class AblationRunner:
    """Plans and runs an ablation into ``output_dir``; ``stream`` (default: ``sys.stderr``) receives the
    progress lines."""

    def __init__(
        self,
        ablation: Ablation,
        output_dir: Path,
        *,
        registry: Registry | None = None,
        stream: TextIO | None = None,
    ) -> None:
        self.ablation = ablation
        self.output_dir = output_dir
        self.stream = stream or sys.stderr  # looked up now: sys.stderr may have been replaced since import
        self.is_main = int(os.environ.get("RANK", "0")) == 0
        self._stop_signal: str | None = None
        self.recipes = ablation.compose_all(registry)
        needs_eval = ablation.spec.eval.knn
        self.runs: list[PlannedRun] = []
        for (variant, seed), resolved in self.recipes.items():
            run_dir = output_dir / variant / f"seed_{seed}"
            status, step = run_status(run_dir, resolved, needs_eval)
            self.runs.append(PlannedRun(variant, seed, run_dir, resolved, status, step))

    def _say(self, text: str) -> None:
        if self.is_main:
            print(f"[ablation {self.ablation.name}] {text}", file=self.stream, flush=True)

    def describe_plan(self) -> list[str]:
        """One line per run: label, run directory and status."""
        lines = []
        for run in self.runs:
            max_steps = run.resolved.recipe.train.max_steps
            what = {"done": "finished", "new": "to train", "resume": f"to resume from step {run.step}/{max_steps}"}[
                run.status
            ]
            lines.append(f"{run.label}: {run.run_dir} ({what})")
        return lines

    def _on_signal(self, signum: int, _frame: Any) -> None:
        self._stop_signal = signal.Signals(signum).name

    def _stop_agreed(self) -> bool:
        """Whether any process received a stop signal, the same answer on every process.

        One MAX all-reduce of a flag once a trainer has set up the process group (it stays up
        between runs; before the first run there is none and each process answers for itself),
        so that all processes stop before the same run instead of some waiting for the others.
        """
        import torch
        import torch.distributed as dist

        from sslkit import distributed

        flag = torch.tensor([float(self._stop_signal is not None)])
        if distributed.is_distributed() and dist.get_backend() == "nccl":
            flag = flag.cuda()
        if distributed.all_reduce_max(flag).item() and self._stop_signal is None:
            self._stop_signal = "SIGTERM/SIGUSR1 on another process"
        return self._stop_signal is not None

    def _train(self, run: PlannedRun) -> bool:
        """Train (or resume) one run and add its time (and where it stopped, if it did) to its
        ``ablation.json``; True when it finished."""
        from sslkit.engine.trainer import Trainer

        start = time.perf_counter()
        result = None
        try:
            trainer = Trainer(run.resolved, run.run_dir)
            if not self._stop_agreed():  # a signal while the trainer was being built
                result = trainer.fit()
                self._stop_signal = self._stop_signal or result.stop_signal
            del trainer
            gc.collect()
        finally:
            if self.is_main:
                state = read_ablation_state(run.run_dir)
                state["wall_s"] = state.get("wall_s", 0.0) + time.perf_counter() - start
                state["sessions"] = state.get("sessions", 0) + 1
                state.pop("stopped", None)
                if self._stop_signal is not None and (result is None or not result.completed):
                    state["stopped"] = {"step": run.step if result is None else result.step,
                                        "signal": self._stop_signal}
                write_ablation_state(run.run_dir, state)
        return result is not None and result.completed

    def _probe(self, run: PlannedRun) -> None:
        """Linear probe of a finished run, unless stored with the same settings."""
        from sslkit.ablation.probe import probe_run, probe_settings

        config = self.ablation.spec.eval
        state = read_ablation_state(run.run_dir)
        if state.get("linear", {}).get("settings") == probe_settings(config):
            return
        self._say(f"{run.label}: linear probe")
        start = time.perf_counter()
        state["linear"] = probe_run(run.run_dir, config)
        state["wall_s"] = state.get("wall_s", 0.0) + time.perf_counter() - start
        write_ablation_state(run.run_dir, state)

    def run(self) -> AblationOutcome:
        """Train every unfinished run, then write the summary; stops early on a preemption signal.

        A run stopped by a non-finite loss is recorded in ``outcome.diverged`` and left out of the
        figures; the other runs go on (its last good checkpoint is kept, so a re-run repeats it).
        """
        handled = (signal.SIGTERM, signal.SIGUSR1)
        main_thread = threading.current_thread() is threading.main_thread()
        previous = {sig: signal.signal(sig, self._on_signal) for sig in handled} if main_thread else {}
        try:
            return self._run_all()
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)

    def _stopped(self, outcome: AblationOutcome, what: str) -> bool:
        """Whether a preemption signal arrived; if so, mark ``outcome`` and say what is left undone."""
        if not self._stop_agreed():
            return False
        outcome.completed, outcome.stop_signal = False, self._stop_signal
        self._say(f"received {self._stop_signal}: stopping before {what}; re-run the same command to continue")
        return True

    def _run_all(self) -> AblationOutcome:
        from sslkit.engine.trainer import NonFiniteLossError

        outcome = AblationOutcome()
        total = len(self.runs)
        for index, run in enumerate(self.runs, start=1):
            if run.status != "done" and self._stopped(outcome, f"run {index}/{total} ({run.label})"):
                break
            if run.status == "done":
                outcome.skipped.append(run.label)
            else:
                how = "resuming from step " + str(run.step) if run.status == "resume" else "training"
                self._say(f"run {index}/{total}: {run.label} ({how}) -> {run.run_dir}")
                try:
                    finished = self._train(run)
                except NonFiniteLossError as error:
                    outcome.diverged[run.label] = str(error)
                    if self.is_main:
                        write_ablation_state(run.run_dir, {**read_ablation_state(run.run_dir), "diverged": str(error)})
                    self._say(f"{run.label} diverged ({error}); going on with the other runs")
                    continue
                if not finished:
                    outcome.completed, outcome.stop_signal = False, self._stop_signal
                    self._say(f"{run.label} stopped early ({self._stop_signal}) with its checkpoint; "
                              "re-run the same command to resume")
                    break
                outcome.trained.append(run.label)
            if self.ablation.spec.eval.linear:
                if self._stopped(outcome, f"the linear probe of {run.label}"):  # on every process: a collective
                    break
                if self.is_main:
                    self._probe(run)
            if run.status != "done" and self.is_main:  # the other processes have no ablation.json to read
                self._report(index, total, run)
        if outcome.skipped:
            self._say(f"skipped {len(outcome.skipped)} finished run(s): {', '.join(outcome.skipped)}")
        if self.is_main:
            if outcome.completed or self.records():
                outcome.files = self.write_summary()
                self._say(f"summary: {self.output_dir / 'summary.md'}")
            else:
                self._say("no run has finished yet: no summary")
        return outcome

    def _report(self, index: int, total: int, run: PlannedRun) -> None:
        record = read_run(run.run_dir, run.variant, run.seed)
        if record is None:
            return
        figures = [f"loss/total {record.final_losses.get('total', float('nan')):.4f}"]
        figures += [f"{name} {value:.2f}%" for name, value in sorted(record.metrics.items()) if name.endswith("top1")]
        self._say(f"run {index}/{total} done: {run.label} in {format_duration(record.wall_s)}: {', '.join(figures)}")

    def finished_runs(self) -> list[PlannedRun]:
        """The runs that are finished now (an unfinished run's figures would not be comparable)."""
        needs_eval = self.ablation.spec.eval.knn
        return [run for run in self.runs if run_status(run.run_dir, run.resolved, needs_eval)[0] == "done"]

    def records(self) -> list[RunRecord]:
        """The records of the finished runs."""
        found = [read_run(run.run_dir, run.variant, run.seed) for run in self.finished_runs()]
        return [r for r in found if r is not None]

    def write_summary(self) -> list[Path]:
        """Write summary.md, summary.csv, the plots and the TensorBoard mean runs from the runs' records."""
        from sslkit.ablation.plots import plot_accuracy, plot_losses
        from sslkit.ablation.tensorboard import write_mean_runs

        records = self.records()
        if not records:
            raise SSLKitError(f"no run of {self.ablation.path} has finished yet under {self.output_dir}")
        done = {(r.variant, r.seed) for r in records}
        missing = [_missing_label(run) for run in self.runs if (run.variant, run.seed) not in done]
        self.output_dir.mkdir(parents=True, exist_ok=True)
        rows = summarise(self.ablation, records)
        variants = [v.name for v in self.ablation.variants]
        plots = plot_losses(variants, records, loss_terms(records), self.output_dir)
        accuracy = plot_accuracy(rows, records, self.output_dir)
        plots += [accuracy] if accuracy is not None else []
        first_seed = {run.variant: run.resolved.data for run in reversed(self.runs)}
        write_mean_runs(self.output_dir, rows, records, first_seed)
        markdown = self.output_dir / "summary.md"
        markdown.write_text(
            render_markdown(self.ablation, rows, str(self.output_dir), [p.name for p in plots], missing),
            encoding="utf-8",
        )
        table = self.output_dir / "summary.csv"
        table.write_text(render_csv(rows), encoding="utf-8")
        return [markdown, table, *plots]
