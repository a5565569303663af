"""The Gram-anchoring value against a direct implementation (explicit loops over crops and patch
pairs, float64), its invariances, and the loss contract, for every form of the loss."""

from __future__ import annotations

import pytest
import torch
from sslkit_gram import GramAnchoringLoss, GramAnchoringParams

from sslkit.components import BuildContext, Output, StepContext, StepInputs
from sslkit.testing import RandomStep, TinyPatchBackbone, assert_loss_contract

EMBED, GRID, PATCH = 16, 4, 4


def naive_gram_loss(student: torch.Tensor, teacher: torch.Tensor, tokens: torch.Tensor | None, gram: str,
                    remove_negatives: bool) -> float:
    """Mean over compared pairs of (cos_student(i, j) - cos_teacher(i, j))^2, pairs within a crop
    (per_image) or over the whole batch (batch), both tokens selected."""
    s = student.detach().double()
    t = teacher.detach().double()

    def similarity(x: torch.Tensor, a: tuple[int, int], b: tuple[int, int]) -> float:
        u, v = x[a], x[b]
        value = float(u @ v / (u.norm() * v.norm()))
        return max(value, 0.0) if remove_negatives else value

    selected = [(c, i) for c in range(s.shape[0]) for i in range(s.shape[1]) if tokens is None or tokens[c, i]]
    terms = [(similarity(s, a, b) - similarity(t, a, b)) ** 2 for a in selected for b in selected
             if gram == "batch" or a[0] == b[0]]
    return sum(terms) / len(terms) if terms else 0.0


def make_case(seed: int = 0, mask_probability: float = 0.5, **params: object,
              ) -> tuple[GramAnchoringLoss, StepInputs, StepContext, torch.Tensor]:
    """A loss, its random inputs (the EMA teacher's backbone: a tiny backbone), the step's context, and
    the Gram teacher's patch features on the step's global crops."""
    torch.manual_seed(seed)
    teacher = TinyPatchBackbone(embed_dim=EMBED, patch_size=PATCH, grid=GRID).eval()
    step = RandomStep(batch_size=3, n_local=0, embed_dim=EMBED, grid=GRID, patch_size=PATCH,
                      mask_probability=mask_probability, seed=seed, modules={"teacher": teacher})
    with torch.no_grad():
        teacher_patches = teacher(step.crops.global_crops).patches
    loss = GramAnchoringLoss(GramAnchoringParams(**params), BuildContext())
    return loss, step.inputs(loss), step.context(), teacher_patches


def with_student(inputs: StepInputs, student: torch.Tensor) -> StepInputs:
    """The same inputs with other student patch tokens."""
    return StepInputs({"student": student, "images": inputs["images"],
                       "teacher_backbone": inputs.module("teacher_backbone")})


@pytest.mark.parametrize("gram", ["per_image", "batch"])
@pytest.mark.parametrize("remove_negatives", [False, True])
def test_all_tokens_match_the_direct_implementation(gram: str, remove_negatives: bool) -> None:
    loss, inputs, ctx, teacher = make_case(gram=gram, remove_negatives=remove_negatives)
    expected = naive_gram_loss(inputs["student"], teacher, None, gram, remove_negatives)
    assert loss(inputs, ctx).item() == pytest.approx(expected, rel=1e-5)


@pytest.mark.parametrize("gram", ["per_image", "batch"])
@pytest.mark.parametrize("tokens", ["masked", "unmasked"])
def test_token_restriction_matches_the_direct_implementation(gram: str, tokens: str) -> None:
    loss, inputs, ctx, teacher = make_case(seed=4, gram=gram, tokens=tokens)
    masks = inputs["masks"]
    assert masks.any() and not masks.any(dim=1).all()  # masked tokens, and crops without any
    selected = masks if tokens == "masked" else ~masks
    expected = naive_gram_loss(inputs["student"], teacher, selected, gram, False)
    assert loss(inputs, ctx).item() == pytest.approx(expected, rel=1e-5)
    unrestricted = naive_gram_loss(inputs["student"], teacher, None, gram, False)
    assert expected != pytest.approx(unrestricted, rel=1e-3)


def test_masked_tokens_without_any_mask_give_zero_still_connected() -> None:
    loss, inputs, ctx, _ = make_case(tokens="masked", mask_probability=0.0)
    assert not inputs["masks"].any()
    check = assert_loss_contract(loss, inputs, ctx, expect_gradient=False)
    assert check.value == 0.0


def test_negatives_removal_only_matters_when_similarities_are_negative() -> None:
    loss_plain, inputs, ctx, _ = make_case(remove_negatives=False)
    loss_clamped = GramAnchoringLoss(GramAnchoringParams(remove_negatives=True), BuildContext())
    assert loss_plain(inputs, ctx).item() != pytest.approx(loss_clamped(inputs, ctx).item(), rel=1e-3)
    positive = with_student(inputs, inputs["student"].detach().abs().requires_grad_(True))
    # The Gram teacher sees the same crops, so make its features positive too: a constant
    # large bias on the final norm moves every feature into the positive orthant.
    with torch.no_grad():
        inputs.module("teacher_backbone").norm.bias.fill_(10.0)
    plain, clamped = (GramAnchoringLoss(GramAnchoringParams(remove_negatives=r), BuildContext()) for r in (False, True))
    assert plain(positive, ctx).item() == pytest.approx(clamped(positive, ctx).item(), rel=1e-6)


def test_features_that_rotate_or_rescale_the_teacher_ones_are_not_penalised() -> None:
    loss, inputs, ctx, teacher = make_case(gram="batch")
    rotation, _ = torch.linalg.qr(torch.randn(EMBED, EMBED, dtype=torch.float64))
    scale = torch.rand(*teacher.shape[:2], 1) + 0.5
    rotated = ((teacher.double() @ rotation).float() * scale).requires_grad_(True)
    assert loss(with_student(inputs, rotated), ctx).item() == pytest.approx(0.0, abs=1e-10)
    assert loss(with_student(inputs, torch.randn_like(teacher).requires_grad_(True)), ctx).item() > 1e-3


@pytest.mark.parametrize(("gram", "tokens"), [("per_image", "all"), ("batch", "all"), ("per_image", "masked"),
                                               ("batch", "unmasked")])
def test_follows_the_loss_contract_and_trains_only_patch_tokens(gram: str, tokens: str) -> None:
    loss, inputs, ctx, _ = make_case(gram=gram, tokens=tokens)
    check = assert_loss_contract(loss, inputs, ctx)
    assert set(check.grads) == {"student"} and check.received_gradient("student")
    assert loss.inputs["student"] == Output("patches", model="student", crops="global")
    assert loss.inputs["teacher_backbone"] == Output("backbone", model="teacher")
    assert loss.inputs["images"] == Output("images", crops="global")
    assert ("masks" in loss.inputs) == (tokens != "all")
