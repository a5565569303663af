"""The generic student-teacher training loop (DINO, Caron et al. 2021, algorithm 1; DINOv2, Oquab et al.
2023, section 4), knowing no specific method.

Per step: draw crops on the device, select and mask global crops, teacher and student
outputs, every loss term, backward, gradient clipping, AdamW with scheduled lr / weight decay,
EMA update of the teacher. Around it: checkpoints (atomic, resumable, world-size independent),
non-finite loss handling, preemption signals, logging, progress and evaluation.
"""

from __future__ import annotations

import json
import logging
import math
import signal
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from sslkit import seeding
from sslkit.components import Crops, StepContext
from sslkit.data.loader import TrainBatch, build_train_loader
from sslkit.engine.build import Components, build_components, new_backbone
from sslkit.engine.checkpoint import list_checkpoints
from sslkit.engine.ema import ema_update
from sslkit.engine.evaluation import OnlineEvaluator
from sslkit.engine.masking import step_masks
from sslkit.engine.model import Student, Teacher
from sslkit.engine.monitor import MonitorView, RunMonitor
from sslkit.engine.optimizer import apply_schedules, build_optimizer, check_first_step_gradients, check_groups
from sslkit.engine.precision import DTYPES, announce, autocast, check_precision, grad_scaler, resolve_precision
from sslkit.engine.previous_stage import REPORT_FILE as STAGE_REPORT
from sslkit.engine.previous_stage import continue_from
from sslkit.engine.run_dir import write_run_info
from sslkit.engine.run_state import RunState
from sslkit.engine.schedules import Schedules, peak_lr
from sslkit.engine.step import agree, compute_losses, compute_outputs
from sslkit.engine.strategy import (
    apply_fsdp2,
    init_processes,
    reshard,
    resolve_strategy,
    unsharded_copy,
    wrap_student,
)
from sslkit.errors import SSLKitError
from sslkit.hardware import cpu_info, device_info
from sslkit.recipe import ResolvedRecipe
from sslkit.registry import get_registry

log = logging.getLogger("sslkit")


class NonFiniteLossError(SSLKitError):
    """A loss term became NaN or infinite."""


@dataclass
class TrainResult:
    """What a finished (or preempted) run reports.

    ``start_step``: the step this call started from (that of ``resumed_from``, the checkpoint it
    loaded, or 0 from scratch); ``steps_run``: the steps this call executed (skipped ones included),
    so ``step == start_step + steps_run``. ``stop_signal``: the SIGTERM/SIGUSR1 this call received,
    if any, also when it came too late to stop the run (during the final evaluation), so that a
    caller running several trainings (``sslkit ablate``) can stop too.
    """

    output_dir: Path
    step: int
    completed: bool
    final_losses: dict[str, float]
    metrics: dict[str, float]
    start_step: int = 0
    steps_run: int = 0
    resumed_from: str | None = None
    stop_signal: str | None = None


def _schedules(resolved: ResolvedRecipe, global_batch: int) -> Schedules:
    r = resolved.recipe
    epoch = r.train.epoch_length
    return Schedules(
        max_steps=r.train.max_steps,
        peak_lr=peak_lr(r.optim.base_lr, global_batch, r.optim.reference_batch_size, r.optim.lr_scaling),
        min_lr=r.optim.min_lr,
        warmup_steps=round(r.optim.warmup_epochs * epoch),
        wd_start=r.optim.weight_decay,
        wd_end=r.optim.weight_decay_end,
        momentum_start=r.teacher.momentum,
        momentum_end=r.teacher.momentum_end,
    )


class Trainer:
    """Builds a run from a resolved recipe and trains it into ``output_dir`` (resuming when possible)."""

    def __init__(self, resolved: ResolvedRecipe, output_dir: Path) -> None:
        self.resolved = resolved
        self.recipe = r = resolved.recipe
        self.output_dir = output_dir
        if r.run.num_threads is not None:
            torch.set_num_threads(r.run.num_threads)
        self.info = init_processes(r.run.device)
        self.precision = resolve_precision(r.run.precision, self.info.device)  # "auto" -> bf16 or fp32
        check_precision(self.precision.resolved, self.info.device)
        self.strategy = resolve_strategy(r.train.strategy, self.info.world_size)
        self.global_batch = r.data.batch_size * self.info.world_size
        torch.manual_seed(seeding.derive_seed(r.run.seed, "init"))
        self.parts: Components = build_components(resolved, resuming=bool(list_checkpoints(output_dir)),
                                                  announce=self.info.is_main)
        self.student = Student(self.parts.backbone, self.parts.heads, self.parts.student_modules,
                               self.parts.losses).to(self.info.device)
        if self.parts.teacher_backbone is not None and self.parts.teacher_heads is not None:  # teacher.mode: frozen
            teacher = Teacher(self.parts.teacher_backbone, self.parts.teacher_heads, frozen=True)
        else:
            teacher = Teacher.ema_of(self.student)
        self.stage_report = continue_from(self.student, teacher, r.init_from) if r.init_from is not None else None
        self.teacher = teacher.to(self.info.device)
        param_dtype = DTYPES.get(self.precision.resolved) if self.strategy == "fsdp2" else None
        self.model = wrap_student(self.student, self.strategy, self.info, param_dtype)
        if self.strategy == "fsdp2":
            apply_fsdp2(self.teacher, param_dtype)
        # after wrapping: FSDP2 replaces the parameters with sharded ones, which the optimizer must hold
        self.groups = self.parts.param_groups.groups(self.student)
        check_groups(self.student, self.groups)
        self.optimizer = build_optimizer(self.groups, r.optim.betas, r.optim.eps, r.optim.implementation,
                                         self.info.device)
        check_first_step_gradients(self.optimizer, self.student)
        if r.train.compile:
            self.model.compile()
            self.teacher.compile()
        self.scaler = grad_scaler(self.precision.resolved, self.info.device)
        self.schedules = _schedules(resolved, self.global_batch)
        self.state = RunState(student=self.student, teacher=self.teacher, optimizer=self.optimizer, scaler=self.scaler,
                              info=self.info, output_dir=output_dir, keep_checkpoints=r.train.keep_checkpoints,
                              recipe_data=resolved.data, registry=get_registry())
        if self.info.is_main:
            announce(self.precision)
            if self.parts.frozen:
                log.info("not trained (no loss of this recipe uses them): %s", ", ".join(self.parts.frozen))
            if self.stage_report is not None:
                (output_dir / STAGE_REPORT).write_text(json.dumps(self.stage_report, indent=2) + "\n", encoding="utf-8")
                log.info("continuing from %s (step %d)", self.stage_report["checkpoint"], self.stage_report["step"])
            for name, report in self.parts.init_reports.items():
                report.save(output_dir / ("init_report.json" if name == "backbone" else f"{name}_init_report.json"))
            write_run_info(output_dir, {"precision": self.precision.as_dict(), **device_info(self.info.device),
                                        "strategy": self.strategy, "world_size": self.info.world_size,
                                        "cpu": cpu_info()})
        self.monitor = RunMonitor(MonitorView(output_dir=output_dir, is_main=self.info.is_main, device=self.info.device,
                                              global_batch=self.global_batch, patch_size=self.parts.backbone.patch_size,
                                              optimizer=self.optimizer, losses=self.parts.loss_modules(),
                                              schedule_values=self._schedule_values), resolved)
        self.evaluator = OnlineEvaluator(resolved, self.info)
        self._stop_signal: str | None = None

    @property
    def evaluated_model(self) -> Student | Teacher:
        """The model whose backbone kNN evaluates: the EMA teacher (DINO's practice), or the student when
        the teacher is a frozen network being distilled from."""
        return self.student if self.teacher.frozen else self.teacher

    def evaluate(self, step: int) -> dict[str, float]:
        """kNN of the evaluated model's backbone (every process runs it; under FSDP2 on a full, unsharded copy)."""
        if self.strategy != "fsdp2":
            return self.evaluator.run(self.evaluated_model.backbone, step)
        copy = unsharded_copy(self.evaluated_model, "backbone", lambda: new_backbone(self.resolved, self.parts.context),
                              self.info.device)
        return self.evaluator.run(copy, step)

    # -- the step -------------------------------------------------------------------------
    def _schedule_values(self, step: int) -> dict[str, float]:
        """The engine's EMA-momentum and weight-decay schedules and every scheduled recipe parameter."""
        return {"momentum": self.schedules.momentum(step), "weight_decay": self.schedules.weight_decay(step),
                **self.parts.schedules.values(step)}

    def _crops(self, batch: TrainBatch) -> Crops:
        return self.parts.augmentation(batch.data, batch.sample_seeds, self.info.device)

    def _masks(self, step: int, crops: Crops) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        if not self.parts.plan.masks or self.parts.crop_policy is None or self.parts.masker is None:
            return None, None
        patch = self.parts.backbone.patch_size or 1
        grid = (crops.global_crops.shape[-2] // patch, crops.global_crops.shape[-1] // patch)
        selected, masks = step_masks(self.parts.crop_policy, self.parts.masker, seed=self.recipe.run.seed,
                                     step=step, n_global=crops.n_global, global_batch=self.global_batch,
                                     rank=self.info.rank, batch_size=crops.batch_size, grid=grid)
        device = self.info.device
        return selected.to(device, non_blocking=True), masks.to(device, non_blocking=True)

    def train_step(self, step: int, batch: TrainBatch) -> dict[str, torch.Tensor] | None:
        """One optimizer step; returns the detached loss terms, or ``None`` when the step was skipped."""
        r, s, timer = self.recipe, self.schedules, self.monitor.timer
        self.parts.schedules.apply(step)  # scheduled component parameters and loss weights of this step
        with timer.phase("augmentation"):
            crops = self._crops(batch)
        with timer.phase("masking"):
            masked_crops, masks = self._masks(step, crops)
        ctx = StepContext(step=step, max_steps=r.train.max_steps, n_global=crops.n_global, n_local=crops.n_local,
                          batch_size=crops.batch_size, global_batch_size=self.global_batch,
                          epoch_length=r.train.epoch_length, logging_step=self.monitor.is_log_step(step))
        plan = self.parts.plan
        with autocast(self.precision.resolved, self.info.device):
            outputs = compute_outputs(self.model, self.teacher, crops, masks, masked_crops, plan, self.parts.producers,
                                      timer)
            with timer.phase("losses"):
                total, terms = compute_losses(self.parts.losses, self.parts.weights, outputs, plan, ctx)
        self.monitor.capture(step, crops, outputs.passes, masks)
        decision = agree(terms, total, self._stop_signal is not None)  # the same on every process
        self._stop_agreed = decision.stop
        if decision.nonfinite:
            self._handle_nonfinite(step, decision.nonfinite, terms)
            return None
        apply_schedules(self.optimizer, self.groups, s.lr(step), s.weight_decay(step), step)
        with timer.phase("backward"):
            if self.scaler is not None:
                torch.autograd.backward(self.scaler.scale(total))
                self.scaler.unscale_(self.optimizer)
            else:
                torch.autograd.backward(total)
        with timer.phase("optimizer"):
            params = [p for g in self.groups for p in g.params]
            if r.optim.clip_grad is not None:
                grad_norm = torch.nn.utils.clip_grad_norm_(params, r.optim.clip_grad)
            else:
                grad_norm = torch.linalg.vector_norm(torch.stack([p.grad.norm() for p in params
                                                                  if p.grad is not None]))
            if self.scaler is not None:
                self.scaler.step(self.optimizer)
                self.scaler.update()
            else:
                self.optimizer.step()
            self.optimizer.zero_grad(set_to_none=True)
        with timer.phase("ema"):
            if self.strategy == "fsdp2":
                reshard(self.teacher)
                reshard(self.student)
            if not self.teacher.frozen:
                ema_update(self.teacher.backbone, self.student.backbone, s.momentum(step))
                ema_update(self.teacher.heads, self.student.heads, s.momentum(step))
        for loss in self.parts.loss_modules().values():
            loss.commit()  # the step is applied: the losses' pending state (centers) becomes theirs
        terms = dict(decision.means)  # every term and the total, averaged over processes
        if hasattr(grad_norm, "full_tensor"):  # FSDP2: the norm over all shards is a replicated DTensor
            grad_norm = grad_norm.full_tensor()
        terms["grad_norm"] = grad_norm.detach().float()
        return terms

    def _handle_nonfinite(self, step: int, bad: tuple[str, ...], terms: dict[str, torch.Tensor]) -> None:
        """Skip the step on every process (no backward, optimizer, EMA, scaler or loss-state update)
        or, past ``train.max_nonfinite_steps``, stop with :class:`NonFiniteLossError`."""
        self.optimizer.zero_grad(set_to_none=True)
        values = ", ".join(f"{n}={terms[n].item()}" if not math.isfinite(terms[n].item())
                           else f"{n} (non-finite on another process)" for n in bad)
        self.state.nonfinite_steps += 1
        if self.state.nonfinite_steps > self.recipe.train.max_nonfinite_steps:
            raise NonFiniteLossError(
                f"non-finite loss at step {step}: {values}. The last good checkpoint was kept "
                f"({self.state.last_checkpoint or 'none yet'}); lower optim.base_lr, check the data, or allow "
                f"skipping with train.max_nonfinite_steps=N")
        log.warning("step %d: non-finite loss (%s); step skipped (%d of %d allowed)", step, values,
                    self.state.nonfinite_steps, self.recipe.train.max_nonfinite_steps)

    # -- the loop -------------------------------------------------------------------------
    def _on_signal(self, signum: int, _frame: Any) -> None:
        self._stop_signal = signal.Signals(signum).name

    def fit(self) -> TrainResult:
        """Train from the last checkpoint (or from scratch) to ``train.max_steps``."""
        r = self.recipe
        start = self.state.restore_latest()
        loader = build_train_loader(
            self.parts.dataset, self.parts.augmentation, global_batch_size=self.global_batch,
            rank=self.info.rank, world_size=self.info.world_size, seed=r.run.seed, start_step=start,
            num_workers=r.data.num_workers, device=self.info.device, max_bad_fraction=r.data.max_bad_fraction)
        iterator = iter(loader)
        self.state.restore_rng()  # after the loader drew its worker seeds, so resume matches a fresh run
        previous = {sig: signal.signal(sig, self._on_signal) for sig in (signal.SIGTERM, signal.SIGUSR1)}
        metrics: dict[str, float] = {}
        last_terms: dict[str, float] = {}
        step = start
        self._stop_agreed = False

        def result(completed: bool) -> TrainResult:
            return TrainResult(self.output_dir, step, completed, last_terms, metrics, start_step=start,
                               steps_run=step - start, resumed_from=self.state.resumed_from,
                               stop_signal=self._stop_signal)

        try:
            self.monitor.start(start)
            if start == 0 and r.eval.at_start:
                metrics = self.monitor.log_eval(0, self.evaluate(0))
            while step < r.train.max_steps:
                self.monitor.begin_step(step)
                with self.monitor.timer.phase("data_wait"):
                    wait_start = time.perf_counter()
                    batch = next(iterator)
                    data_wait = time.perf_counter() - wait_start
                terms = self.train_step(step, batch)
                step += 1
                if terms is not None:
                    last_terms = self.monitor.after_step(step, terms, data_wait)
                if self.evaluator.due(step):
                    metrics = self.monitor.log_eval(step, self.evaluate(step))
                if step % r.train.checkpoint_every == 0 or step == r.train.max_steps:
                    self.state.save(step)
                if self._stop_agreed and step < r.train.max_steps:  # agreed by every process in train_step
                    if step % r.train.checkpoint_every != 0:
                        self.state.save(step)
                    cause = (f"received {self._stop_signal}" if self._stop_signal is not None
                             else "another process received a stop signal")
                    log.warning("%s: checkpoint saved at step %d, exiting", cause, step)
                    return result(completed=False)
            if r.eval.at_end and self.evaluator.enabled and not self.evaluator.due(step):
                metrics = self.monitor.log_eval(step, self.evaluate(step))
            self.monitor.finish(step, last_terms, metrics)
            return result(completed=True)
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            self.monitor.close()
