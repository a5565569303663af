"""The Gram teacher: start step, EMA snapshots and their refresh schedule, state changes only in
commit (a skipped step leaves none), resuming from a state dict, frozen checkpoints (safetensors
and sslkit checkpoints), errors, and registration."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file
from sslkit_gram import GramAnchoringLoss, GramAnchoringParams
from torch import nn

from sslkit.components import BuildContext, StepInputs
from sslkit.engine.checkpoint import save_checkpoint
from sslkit.errors import RecipeError
from sslkit.registry import get_registry
from sslkit.testing import RandomStep, TinyPatchBackbone, assert_loss_contract, make_step_context

EMBED, GRID, PATCH = 16, 4, 4


def backbone(seed: int) -> TinyPatchBackbone:
    torch.manual_seed(seed)
    return TinyPatchBackbone(embed_dim=EMBED, patch_size=PATCH, grid=GRID).eval()


def inputs(loss: GramAnchoringLoss, teacher: nn.Module, seed: int = 0) -> StepInputs:
    """Random inputs of one step (the same for the same seed) whose EMA teacher backbone is ``teacher``."""
    step = RandomStep(batch_size=2, n_local=0, embed_dim=EMBED, grid=GRID, patch_size=PATCH, seed=seed,
                      modules={"teacher": teacher})
    return step.inputs(loss)


def context(step: int):
    return make_step_context(step=step, batch_size=2, n_local=0)


def same_weights(a: nn.Module, b: nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def drift(module: nn.Module, amount: float) -> None:
    """Move the weights, as the EMA update moves the teacher between steps."""
    with torch.no_grad():
        for parameter in module.parameters():
            parameter.add_(amount)


def run_steps(loss: GramAnchoringLoss, teacher: nn.Module, steps: range) -> dict[int, dict[str, torch.Tensor]]:
    """Apply every step of ``steps`` as the engine does (forward, the EMA update drifting
    ``teacher``, commit); return the teacher's weights as they were at each step's forward."""
    seen = {}
    for step in steps:
        seen[step] = {k: v.clone() for k, v in teacher.state_dict().items()}
        loss(inputs(loss, teacher), context(step))
        drift(teacher, 0.01)
        loss.commit()
    return seen


def loss_state(loss: GramAnchoringLoss) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in loss.state_dict().items()}


def same_state(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def holds(loss: GramAnchoringLoss, weights: dict[str, torch.Tensor]) -> bool:
    state = loss.gram_teacher.state_dict()
    return all(torch.equal(state[k], v) for k, v in weights.items())


def test_before_start_step_the_loss_is_zero_connected_and_has_no_teacher() -> None:
    loss = GramAnchoringLoss(GramAnchoringParams(start_step=5), BuildContext())
    check = assert_loss_contract(loss, inputs(loss, backbone(0)), context(4), expect_gradient=False)
    assert check.value == 0.0
    assert check.grads["student"] is not None
    assert loss.gram_teacher is None and "gram_teacher.norm.weight" not in loss.state_dict()
    assert loss.diagnostics() == {}
    value = loss(inputs(loss, backbone(0)), context(5))
    loss.commit()
    assert value.item() > 0 and loss.gram_teacher is not None


def test_ema_snapshot_is_taken_at_start_and_refreshed_every_n_steps() -> None:
    teacher = backbone(0)
    loss = GramAnchoringLoss(GramAnchoringParams(start_step=2, refresh_every=3), BuildContext())
    seen: dict[int, dict[str, torch.Tensor]] = {}
    for step in range(2, 10):
        seen[step] = {k: v.clone() for k, v in teacher.state_dict().items()}
        loss(inputs(loss, teacher), context(step))
        drift(teacher, 0.01)
        loss.commit()
        source = max(s for s in (2, 5, 8) if s <= step)
        assert holds(loss, seen[source]), f"step {step}: expected the snapshot of step {source}"
        assert loss.diagnostics() == {"refreshed_at": float(source)}
    assert int(loss.last_refresh) == 8


@pytest.mark.parametrize("start_step", [0, 2], ids=["refresh_due", "first_active_step"])
def test_a_skipped_step_leaves_the_gram_teacher_and_its_schedule_unchanged(start_step: int) -> None:
    """A step whose forward makes a Gram teacher (the first active step, or a due refresh) but is
    then skipped (no commit, no EMA update) changes nothing: state_dict, last_refresh, snapshot,
    diagnostics. The skipped step's forward already used the new teacher; the next applied step
    makes it again."""
    teacher = backbone(0)
    loss = GramAnchoringLoss(GramAnchoringParams(start_step=start_step, refresh_every=2), BuildContext())
    skipped = 2
    run_steps(loss, teacher, range(skipped))  # start_step 0: the snapshot of step 0, refreshed again at step 2
    before, diagnostics = loss_state(loss), loss.diagnostics()
    used = loss(inputs(loss, teacher), context(skipped)).item()
    reference = GramAnchoringLoss(GramAnchoringParams(refresh_every=100), BuildContext())
    assert used == reference(inputs(reference, teacher), context(0)).item(), (
        "the forward of the step must use the Gram teacher made at that step")
    assert same_state(loss_state(loss), before), "a forward without commit changed the loss's state"
    assert loss.diagnostics() == diagnostics
    assert int(loss.last_refresh) == (0 if start_step == 0 else -1)
    assert (loss.gram_teacher is None) == (start_step > 0)
    seen = run_steps(loss, teacher, range(skipped + 1, skipped + 2))
    assert holds(loss, seen[skipped + 1]) and int(loss.last_refresh) == skipped + 1


def test_value_uses_the_snapshot_not_the_current_teacher() -> None:
    teacher = backbone(0)
    loss = GramAnchoringLoss(GramAnchoringParams(refresh_every=100), BuildContext())
    first = loss(inputs(loss, teacher), context(0)).item()
    loss.commit()
    drift(teacher, 0.5)
    assert loss(inputs(loss, teacher), context(1)).item() == pytest.approx(first)
    fresh = GramAnchoringLoss(GramAnchoringParams(refresh_every=100), BuildContext())
    assert fresh(inputs(fresh, teacher), context(1)).item() != pytest.approx(first)


def test_snapshot_is_frozen_in_eval_mode_and_saved_in_the_state_dict() -> None:
    torch.manual_seed(0)
    teacher = TinyPatchBackbone(embed_dim=EMBED, patch_size=PATCH, grid=GRID)  # trainable, as a student would be
    loss = GramAnchoringLoss(GramAnchoringParams(), BuildContext())
    loss(inputs(loss, teacher), context(0)).backward()
    loss.commit()
    assert all(p.grad is None for p in teacher.parameters())
    assert all(not p.requires_grad for p in loss.gram_teacher.parameters())
    loss.train()
    assert loss.training and not loss.gram_teacher.training
    state = loss.state_dict()
    assert {"last_refresh", "gram_teacher.norm.weight", "gram_teacher.patch_embed.weight"} <= set(state)


def test_resume_from_a_state_dict_keeps_the_snapshot_and_the_schedule() -> None:
    params = GramAnchoringParams(start_step=1, refresh_every=3)
    teacher = backbone(0)
    original = GramAnchoringLoss(params, BuildContext())
    seen = run_steps(original, teacher, range(0, 3))
    resumed = GramAnchoringLoss(params, BuildContext())
    resumed.load_state_dict(original.state_dict())  # strict: the snapshot's keys are accepted before it exists
    assert resumed.gram_teacher is None
    seen.update(run_steps(resumed, teacher, range(3, 4)))
    assert holds(resumed, seen[1]), "the resumed loss must keep the snapshot of step 1, not copy the teacher again"
    seen.update(run_steps(resumed, teacher, range(4, 5)))
    assert holds(resumed, seen[4]) and int(resumed.last_refresh) == 4


def test_checkpoint_teacher_from_safetensors_is_loaded_and_never_refreshed(tmp_path: Path) -> None:
    frozen = backbone(7)
    plain = tmp_path / "plain.safetensors"
    prefixed = tmp_path / "prefixed.safetensors"
    save_file({k: v.contiguous() for k, v in frozen.state_dict().items()}, str(plain))
    save_file({f"backbone.{k}": v.contiguous() for k, v in frozen.state_dict().items()}, str(prefixed))
    for path in (plain, prefixed):
        loss = GramAnchoringLoss(GramAnchoringParams(teacher="checkpoint", checkpoint=str(path), refresh_every=1),
                                 BuildContext())
        teacher = backbone(0)
        for step in range(3):
            loss(inputs(loss, teacher), context(step))
            drift(teacher, 0.1)
            loss.commit()
        assert same_weights(loss.gram_teacher, frozen)
    reference = GramAnchoringLoss(GramAnchoringParams(refresh_every=100), BuildContext())
    expected = reference(inputs(reference, frozen), context(0)).item()
    assert loss(inputs(loss, teacher), context(3)).item() == pytest.approx(expected)


def test_checkpoint_teacher_from_an_sslkit_checkpoint_file_or_run_directory(tmp_path: Path) -> None:
    frozen, other = backbone(3), backbone(4)
    teacher_state = {f"backbone.{k}": v for k, v in frozen.state_dict().items()}
    teacher_state["heads.dino.weight"] = torch.zeros(2, 2)
    save_checkpoint(tmp_path, 10, {"teacher": {f"backbone.{k}": v for k, v in other.state_dict().items()}}, keep=5)
    path = save_checkpoint(tmp_path, 20, {"teacher": teacher_state, "student": {}}, keep=5)
    for source in (path, tmp_path):
        loss = GramAnchoringLoss(GramAnchoringParams(teacher="checkpoint", checkpoint=str(source)), BuildContext())
        loss(inputs(loss, backbone(0)), context(0))
        loss.commit()
        assert same_weights(loss.gram_teacher, frozen)


def test_configuration_and_file_errors_are_clear(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="teacher 'checkpoint' needs `checkpoint`"):
        GramAnchoringLoss(GramAnchoringParams(teacher="checkpoint"), BuildContext())
    with pytest.raises(ValueError, match="only read with teacher 'checkpoint'"):
        GramAnchoringLoss(GramAnchoringParams(checkpoint="x.pt"), BuildContext())
    with pytest.raises(ValueError, match="checkpoint not found"):
        GramAnchoringLoss(GramAnchoringParams(teacher="checkpoint", checkpoint=str(tmp_path / "no.pt")), BuildContext())
    with pytest.raises(ValueError, match="no checkpoint in"):
        GramAnchoringLoss(GramAnchoringParams(teacher="checkpoint", checkpoint=str(tmp_path)), BuildContext())
    foreign = tmp_path / "foreign.pt"
    torch.save({"state_dict": {}}, foreign)
    with pytest.raises(ValueError, match="is not an sslkit checkpoint"):
        GramAnchoringLoss(GramAnchoringParams(teacher="checkpoint", checkpoint=str(foreign)), BuildContext())
    wrong = tmp_path / "wrong.safetensors"
    save_file({"head.weight": torch.zeros(2, 2)}, str(wrong))
    loss = GramAnchoringLoss(GramAnchoringParams(teacher="checkpoint", checkpoint=str(wrong)), BuildContext())
    with pytest.raises(ValueError, match="do not fit the teacher backbone's architecture"):
        loss(inputs(loss, backbone(0)), context(0))


def test_is_registered_by_the_installed_distribution_with_a_validated_schema() -> None:
    component = get_registry().get("loss", "gram_anchoring")
    assert component.provider.distribution == "sslkit-gram"
    assert component.params is GramAnchoringParams
    with pytest.raises(RecipeError, match=r"tokens: expected one of 'all', 'masked', 'unmasked', got 'maskd' "
                                          r"\(did you mean 'masked'\?\)"):
        get_registry().create("loss", "gram_anchoring", tokens="maskd")
