"""What a run reports while it trains: TensorBoard scalars and images, ``metrics.jsonl``,
the terminal progress line, and the collapse detector.

The monitor knows no method: it logs the loss terms, the optimizer's groups, the schedules, the
student's CLS-feature statistics and whatever each loss reports in ``diagnostics()``. It sees the
run through a :class:`MonitorView`, not the trainer."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from sslkit.components import Loss
from sslkit.engine.plan import PassKey
from sslkit.engine.step_timer import StepTimer
from sslkit.errors import SSLKitError
from sslkit.monitoring import diagnostics
from sslkit.monitoring.images import crops_grid, patch_pca_images
from sslkit.monitoring.progress import Progress
from sslkit.params import validate
from sslkit.recipe import ResolvedRecipe
from sslkit.step_data import BackboneOutput, Crops

log = logging.getLogger("sslkit")


@dataclass(frozen=True)
class MonitorView:
    """What the monitor reads of a run."""

    output_dir: Path
    is_main: bool
    device: torch.device
    global_batch: int
    patch_size: int | None
    optimizer: torch.optim.Optimizer
    losses: Mapping[str, Loss]
    schedule_values: Callable[[int], dict[str, float]]  # step -> {"momentum": ..., "<recipe key>": ...}


class RunMonitor:
    """Collects per-step values cheaply and writes them every ``train.log_every`` steps (rank 0 only)."""

    def __init__(self, run: MonitorView, resolved: ResolvedRecipe) -> None:
        self.run = run
        self.recipe = resolved.recipe
        self.enabled = run.is_main
        self.writer: Any = None
        self.progress: Progress | None = None
        self.detector = diagnostics.CollapseDetector(
            validate(diagnostics.CollapseParams, self.recipe.monitor.collapse, prefix="monitor.collapse"))
        self._captured: dict[str, Tensor] = {}
        #: per-phase step times, taken on the steps this process writes (``time/<phase>`` scalars)
        self.timer = StepTimer(run.device)
        self._window_start = time.perf_counter()
        self._window_images = 0
        self._window_wait = 0.0
        self._resolved_text = json.dumps(resolved.data, indent=2)

    def start(self, step: int) -> None:
        if not self.enabled:
            return
        from torch.utils.tensorboard import SummaryWriter

        self.writer = SummaryWriter(log_dir=str(self.run.output_dir))
        self.writer.add_text("recipe", f"```\n{self._resolved_text}\n```", step)
        self.progress = Progress(self.recipe.train.max_steps, start_step=step, log_every=self.recipe.train.log_every)
        self._window_start = time.perf_counter()

    def _image_step(self, step: int) -> bool:
        every = self.recipe.monitor.image_every
        return step == 0 or (every > 0 and step % every == 0)

    def is_log_step(self, step: int) -> bool:
        """Whether the values of ``step`` are written (every ``train.log_every`` steps and the last)."""
        return (step + 1) % self.recipe.train.log_every == 0 or step + 1 == self.recipe.train.max_steps

    def begin_step(self, step: int) -> None:
        """Start ``step``: its phases are timed when it is a logging step of the writing process."""
        self.timer.begin(self.enabled and self.is_log_step(step))

    def capture(self, step: int, crops: Crops, passes: Mapping[PassKey, BackboneOutput],
                masks: Tensor | None) -> None:
        """Keep (detached) what the diagnostics and images of this step need; no device sync."""
        if not self.enabled:
            return
        student = next((out for (model, crop_set, _), out in passes.items()
                        if model == "student" and crop_set == "global"), None)
        if self.is_log_step(step):
            self._captured = {"student_cls": student.cls.detach()} if student is not None else {}
        if self._image_step(step) and self.writer is not None:
            patch = self.run.patch_size
            self.writer.add_images("crops/global", crops_grid(crops.global_crops, masks, patch), step)
            if crops.local_crops is not None:
                self.writer.add_images("crops/local", crops_grid(crops.local_crops, None, patch), step)
            teacher = passes.get(("teacher", "global", "none"))
            side, features = ("teacher", teacher) if teacher is not None else ("student", student)
            if features is not None and features.patches is not None and patch:
                grid = (crops.global_crops.shape[-2] // patch, crops.global_crops.shape[-1] // patch)
                self.writer.add_images(f"{side}/patch_pca", patch_pca_images(features.patches, grid), step)

    def after_step(self, step: int, terms: dict[str, Tensor], data_wait: float) -> dict[str, float]:
        """Account for one finished step; every ``log_every`` steps write everything (one sync)."""
        self._window_images += self.run.global_batch
        self._window_wait += data_wait
        if not self.is_log_step(step - 1):
            return {}
        values = {f"loss/{k}" if k not in ("grad_norm",) else "optim/grad_norm": float(v)
                  for k, v in zip(terms, torch.stack(list(terms.values())).tolist(), strict=True)}
        elapsed = max(time.perf_counter() - self._window_start, 1e-9)
        values["perf/images_per_s"] = self._window_images / elapsed
        values["perf/data_wait_fraction"] = min(self._window_wait / elapsed, 1.0)
        values.update(self._schedule_values(step - 1))
        values.update(self._diagnostics())
        values.update(self._memory())
        values.update(self.timer.take())
        images = self._window_images
        self._window_start, self._window_images, self._window_wait = time.perf_counter(), 0, 0.0
        if not self.enabled:
            return {k[5:]: v for k, v in values.items() if k.startswith("loss/")}
        for key, value in values.items():
            self.writer.add_scalar(key, value, step)
        self._write_jsonl({"step": step, **values})
        for warning in self.detector.check(values, step):
            log.warning("step %d: %s", step, warning)
            if self.recipe.monitor.stop_on_collapse:
                raise SSLKitError(f"stopped at step {step} (monitor.stop_on_collapse): {warning}")
        if self.progress is not None:
            self.progress.update(step, images, {"loss": values["loss/total"]})
        return {k[5:]: v for k, v in values.items() if k.startswith("loss/")}

    def _schedule_values(self, step: int) -> dict[str, float]:
        values = {f"schedule/{key}": value for key, value in self.run.schedule_values(step).items()}
        for group in self.run.optimizer.param_groups:
            values[f"lr/{group['name']}"] = group["lr"]
            values[f"weight_decay/{group['name']}"] = group["weight_decay"]
        return values

    def _diagnostics(self) -> dict[str, float]:
        """Health metrics of the captured step: the student's CLS features and whatever the losses
        report (``health/loss_<entry>/<key>``)."""
        found: dict[str, Tensor | float] = {}
        cls = self._captured.get("student_cls")
        if cls is not None and cls.shape[0] >= 2:
            for key, feature in diagnostics.feature_health(cls.float()).items():
                found[f"health/student_cls/{key}"] = feature
        for name, loss in self.run.losses.items():
            for key, reported in loss.diagnostics().items():
                found[f"health/loss_{name}/{key}"] = reported
        if not found:
            return {}
        numbers = torch.stack([torch.as_tensor(v, dtype=torch.float32).detach().cpu() for v in found.values()])
        return dict(zip(found, numbers.tolist(), strict=True))

    def _memory(self) -> dict[str, float]:
        values = {}
        device = self.run.device
        if device.type == "cuda":
            values["memory/cuda_peak_gib"] = torch.cuda.max_memory_allocated(device) / 2**30
        try:
            import resource

            values["memory/host_peak_gib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
        except ImportError:  # pragma: no cover - non-Unix
            pass
        return values

    def _write_jsonl(self, record: dict[str, Any]) -> None:
        with open(self.run.output_dir / "metrics.jsonl", "a", encoding="utf-8") as handle:
            handle.write(json.dumps(record) + "\n")

    def log_eval(self, step: int, metrics: dict[str, float]) -> dict[str, float]:
        """Write evaluation results (TensorBoard and metrics.jsonl) and print them."""
        if self.enabled and metrics:
            for key, value in metrics.items():
                self.writer.add_scalar(f"eval/{key}", value, step)
            self._write_jsonl({"step": step, **{f"eval/{k}": v for k, v in metrics.items()}})
            log.info("step %d: %s", step, ", ".join(f"{k} {v:.2f}" for k, v in metrics.items()))
        return metrics

    def finish(self, step: int, losses: dict[str, float], metrics: dict[str, float]) -> None:
        if not self.enabled or self.writer is None:
            return
        hparams = {"seed": self.recipe.run.seed, "batch_size": self.recipe.data.batch_size,
                   "max_steps": self.recipe.train.max_steps, "base_lr": self.recipe.optim.base_lr,
                   "name": self.recipe.run.name or ""}
        final = {f"hparam/{k}": v for k, v in {**losses, **metrics}.items()}
        if final:
            self.writer.add_hparams(hparams, final, run_name=".")

    def close(self) -> None:
        if self.progress is not None:
            self.progress.close()
        if self.writer is not None:
            self.writer.close()
