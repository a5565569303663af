"""Two gloo processes holding halves of a batch train exactly like one process holding all of it.

The engine computes each process's loss and DDP averages the parameter gradients over the
processes, so a run on W processes matches one process when

- the mean over processes of the per-process losses is the single-process loss, and
- each process's gradient w.r.t. its own inputs, divided by W, is the single-process gradient
  w.r.t. those inputs (what DDP's averaging then propagates to the parameters).

Both are checked here for the dino (centering, Sinkhorn-Knopp), ibot (also with no masked token
on one process), distributed koleo and patch_prototype losses, together with the state the
losses keep (centers) and the gradients of the loss's own parameters (prototypes), on hand-made
inputs with edge cases (a process without any masked token, KoLeo groups of one rank); the same
check on random steps, for any loss, is ``sslkit.testing.assert_loss_distributed``.
"""

from __future__ import annotations

import pytest
import torch
from torch import Tensor

from sslkit.components import BuildContext, Loss, Output, StepContext, StepInputs
from sslkit.testing import run_on_processes
from sslkit_plugins.losses.dino import DINOLoss, DINOLossParams
from sslkit_plugins.losses.ibot import IBOTLoss, IBOTLossParams
from sslkit_plugins.losses.koleo import KoLeoLoss, KoLeoLossParams
from sslkit_plugins.losses.patch_prototype import PatchPrototypeLoss, PatchPrototypeLossParams

WORLD = 2
N_GLOBAL, N_LOCAL, BATCH, K, N, D = 2, 2, 4, 8, 5, 4  # BATCH: the global batch


def _inputs() -> dict[str, Tensor]:
    """Full-batch inputs, image axis 1 (split between processes)."""
    g = torch.Generator().manual_seed(0)
    masks = torch.rand(N_GLOBAL, BATCH, N, generator=g) < 0.5
    masks[0, 0] = True  # unequal counts, at least one masked token
    masks_one_side = masks.clone()
    masks_one_side[:, BATCH // WORLD :] = False  # the second process has no masked token at all
    return {
        "student_cls": torch.randn(N_GLOBAL + N_LOCAL, BATCH, K, generator=g),
        "teacher_cls": torch.randn(N_GLOBAL, BATCH, K, generator=g),
        "student_tokens": torch.randn(N_GLOBAL, BATCH, N, K, generator=g),
        "teacher_tokens": torch.randn(N_GLOBAL, BATCH, N, K, generator=g),
        "masks": masks,
        "masks_one_side": masks_one_side,
        "features": torch.randn(N_GLOBAL, BATCH, D, generator=g),
        "student_patches": torch.randn(N_GLOBAL, BATCH, N, D, generator=g),
        "teacher_patches": torch.randn(N_GLOBAL, BATCH, N, D, generator=g),
    }


def _value(request: Output, x: dict[str, Tensor], masks: Tensor) -> Tensor:
    """The engine's tensor for ``request`` from the process's share ``x`` (crop-major rows)."""
    if request.kind == "masks":
        return masks
    side = request.model
    if request.kind == "cls":
        return x[f"{side}_cls"].flatten(0, 1) if request.heads else x["features"].flatten(0, 1)
    tokens = x[f"{side}_tokens" if request.heads else f"{side}_patches"].flatten(0, 1)
    return tokens[masks] if request.positions == "masked" else tokens


def _losses() -> dict[str, tuple[Loss, str]]:
    """Loss name -> (loss, masks key)."""
    ctx = BuildContext(embed_dim=D, head_dims={"h": K}, n_global_crops=N_GLOBAL, n_local_crops=N_LOCAL)
    torch.manual_seed(0)
    return {
        "dino_centering": (DINOLoss(DINOLossParams(head="h"), ctx), "masks"),
        "dino_sinkhorn": (DINOLoss(DINOLossParams(head="h", normalization="sinkhorn_knopp"), ctx), "masks"),
        "ibot_centering": (IBOTLoss(IBOTLossParams(head="h"), ctx), "masks"),
        "ibot_sinkhorn": (IBOTLoss(IBOTLossParams(head="h", normalization="sinkhorn_knopp"), ctx), "masks"),
        "ibot_one_side": (IBOTLoss(IBOTLossParams(head="h"), ctx), "masks_one_side"),
        "ibot_sinkhorn_one_side": (
            IBOTLoss(IBOTLossParams(head="h", normalization="sinkhorn_knopp"), ctx),
            "masks_one_side",
        ),
        "koleo_distributed": (KoLeoLoss(KoLeoLossParams(mode="distributed"), BuildContext()), "masks"),
        "koleo_groups_of_one": (KoLeoLoss(KoLeoLossParams(mode="distributed", group_size=1), BuildContext()), "masks"),
        "patch_per_token": (PatchPrototypeLoss(PatchPrototypeLossParams(num_prototypes=6), ctx), "masks"),
        "patch_per_sample": (
            PatchPrototypeLoss(PatchPrototypeLossParams(num_prototypes=6, normalization="per_sample"), ctx),
            "masks",
        ),
    }


def _compute(part: int, parts: int) -> dict[str, dict[str, Tensor]]:
    """Every loss on images ``part`` of ``parts`` equal shares: value, input gradients, state."""
    full = _inputs()
    images = slice(part * BATCH // parts, (part + 1) * BATCH // parts)
    batch = BATCH // parts
    ctx = StepContext(
        step=0,
        max_steps=1,
        n_global=N_GLOBAL,
        n_local=N_LOCAL,
        batch_size=batch,
        global_batch_size=BATCH,
    )
    results = {}
    for name, (loss, masks_key) in _losses().items():
        x = {k: v[:, images].clone().requires_grad_(v.is_floating_point()) for k, v in full.items()}
        masks = x[masks_key].flatten(0, 1)
        value = loss(StepInputs({key: _value(r, x, masks) for key, r in loss.inputs.items()}), ctx)
        value.backward()
        loss.commit()  # the engine commits the losses' state after an applied step
        result = {"value": value.detach()}
        result.update({k: t.grad for k, t in x.items() if t.grad is not None})
        result.update({f"state/{k}": v for k, v in loss.state_dict().items() if k != "prototypes"})
        result.update({f"param/{k}": p.grad for k, p in loss.named_parameters()})
        results[name] = result
    return results


@pytest.fixture(scope="module")
def runs() -> tuple[dict, list[dict], list[dict]]:
    """(one process on the whole batch, each rank of the 2-process run, one process on each half)."""
    ranks = run_on_processes(_compute, WORLD)
    return _compute(0, 1), ranks, [_compute(r, WORLD) for r in range(WORLD)]


def _image_slice(rank: int) -> slice:
    return slice(rank * BATCH // WORLD, (rank + 1) * BATCH // WORLD)


CONSISTENT = [
    "dino_centering",
    "dino_sinkhorn",
    "ibot_centering",
    "ibot_sinkhorn",
    "ibot_one_side",
    "ibot_sinkhorn_one_side",
    "koleo_distributed",
    "patch_per_token",
    "patch_per_sample",
]


@pytest.mark.slow
@pytest.mark.parametrize("name", CONSISTENT)
def test_two_processes_equal_one(runs, name: str) -> None:
    single, ranks, _ = runs
    expected = single[name]
    values = torch.stack([r[name]["value"] for r in ranks])
    torch.testing.assert_close(values.mean(), expected["value"], rtol=1e-5, atol=1e-6)
    if name.startswith("koleo"):  # every process returns the global value
        torch.testing.assert_close(values, expected["value"].expand(WORLD), rtol=1e-5, atol=1e-6)
    input_keys = [k for k in expected if "/" not in k and k != "value"]
    assert input_keys, "the single-process run produced no input gradient"
    for key in input_keys:
        for rank, result in enumerate(ranks):
            torch.testing.assert_close(
                result[name][key] / WORLD,
                expected[key][:, _image_slice(rank)],
                rtol=1e-4,
                atol=1e-6,
                msg=f"{name} d/d{key} on rank {rank}",
            )
    for key in (k for k in expected if k.startswith("state/")):
        for result in ranks:
            torch.testing.assert_close(result[name][key], expected[key], rtol=1e-5, atol=1e-6)
    for key in (k for k in expected if k.startswith("param/")):
        averaged = torch.stack([r[name][key] for r in ranks]).mean(dim=0)  # what DDP does
        torch.testing.assert_close(averaged, expected[key], rtol=1e-4, atol=1e-6)


@pytest.mark.slow
def test_koleo_groups_of_one_rank_are_local(runs) -> None:
    _, ranks, halves = runs
    for rank in range(WORLD):
        got, expected = ranks[rank]["koleo_groups_of_one"], halves[rank]["koleo_groups_of_one"]
        torch.testing.assert_close(got["value"], expected["value"])
        torch.testing.assert_close(got["features"], expected["features"])
    assert not torch.allclose(ranks[0]["koleo_groups_of_one"]["value"], ranks[1]["koleo_groups_of_one"]["value"])
