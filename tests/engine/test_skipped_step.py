"""A skipped step leaves no trace: NaN teacher logits at one step (``train.max_nonfinite_steps=1``)
leave the student, the EMA teacher, the DINO and iBOT centers and the optimizer state bit-identical,
and the run goes on with finite centers.

The centers are the trap: the losses compute their update in ``forward``, before the engine knows
whether the step is applied, so the update must stay pending until :meth:`Loss.commit`.
"""

from __future__ import annotations

import copy
from typing import Any

import torch

from sslkit.engine.trainer import Trainer
from sslkit.recipe import load_recipe

SKIPPED = 2


def _state(trainer: Trainer) -> dict[str, Any]:
    """Copies of everything a step may change: student (with the losses' centers), teacher, optimizer."""
    return {"student": {k: v.detach().clone() for k, v in trainer.student.state_dict().items()},
            "teacher": {k: v.detach().clone() for k, v in trainer.teacher.state_dict().items()},
            "optimizer": copy.deepcopy(trainer.optimizer.state_dict())}


def _differences(a: Any, b: Any, path: str = "") -> list[str]:
    """Paths where two nested states differ (tensors compared bit for bit)."""
    if isinstance(a, dict):
        if a.keys() != b.keys():
            return [f"{path} keys"]
        return [d for k in a for d in _differences(a[k], b[k], f"{path}.{k}")]
    if isinstance(a, list | tuple):
        return [d for i, (x, y) in enumerate(zip(a, b, strict=True)) for d in _differences(x, y, f"{path}[{i}]")]
    if isinstance(a, torch.Tensor):
        return [] if torch.equal(a, b) else [path]
    return [] if a == b else [path]


def test_a_step_skipped_for_nan_teacher_logits_changes_nothing(tmp_path, quickstart, tiny_overrides) -> None:
    overrides = [*tiny_overrides, "train.max_steps=4", "train.checkpoint_every=100", "train.max_nonfinite_steps=1",
                 "losses.ibot={name: ibot, weight: 1.0, head: dino}"]  # two centers: DINO and iBOT
    trainer = Trainer(load_recipe(quickstart, overrides), tmp_path / "run")
    poisoned = {"on": False}
    trainer.teacher.heads["dino"].register_forward_hook(
        lambda module, args, output: output * float("nan") if poisoned["on"] else None)
    states: dict[int, tuple[dict[str, Any], dict[str, Any]]] = {}
    returned: dict[int, Any] = {}
    train_step = trainer.train_step

    def observed_step(step: int, batch: Any) -> Any:
        before = _state(trainer)
        poisoned["on"] = step == SKIPPED
        returned[step] = train_step(step, batch)
        assert all(p.grad is None for p in trainer.student.parameters()), f"gradients left after step {step}"
        states[step] = (before, _state(trainer))
        return returned[step]

    trainer.train_step = observed_step  # type: ignore[method-assign]
    result = trainer.fit()
    assert result.completed and result.step == 4 and trainer.state.nonfinite_steps == 1
    assert returned[SKIPPED] is None and returned[SKIPPED + 1] is not None
    before, after = states[SKIPPED]
    assert _differences(before, after) == [], "the skipped step changed the run's state"
    # the comparison is not vacuous: the next (applied) step changes every part, the centers included
    before, after = states[SKIPPED + 1]
    changed = set(_differences(before, after))
    for key in (".student.losses.dino.center", ".student.losses.ibot.center", ".student.backbone.cls_token",
                ".teacher.backbone.cls_token"):
        assert key in changed, key
    assert any(key.startswith(".optimizer.state") for key in changed)
    for name in ("dino", "ibot"):
        assert torch.isfinite(trainer.parts.losses[name].center).all(), f"the {name} center is not finite"
