"""The Gram-anchoring value against a direct implementation (explicit loops over crops and patch
pairs, float64), its invariances, and the loss contract, for every form of the loss."""

from __future__ import annotations

import pytest
import torch
from sslkit_gram import GramAnchoringLoss, GramAnchoringParams

from sslkit.components import BuildContext, LossNeeds, StepContext, StepOutputs
from sslkit.testing import TinyPatchBackbone, assert_loss_contract, make_step_context, make_step_outputs

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
              ) -> tuple[GramAnchoringLoss, StepOutputs, StepContext, torch.Tensor]:
    """A loss, random step outputs, a context whose EMA teacher is a tiny backbone, and the Gram
    teacher's patch features on the step's global crops."""
    torch.manual_seed(seed)
    teacher = TinyPatchBackbone(embed_dim=EMBED, patch_size=PATCH, grid=GRID).eval()
    out = make_step_outputs(batch_size=3, n_local=0, embed_dim=EMBED, grid=GRID, patch_size=PATCH,
                            mask_probability=mask_probability, seed=seed)
    ctx = make_step_context(out, teacher_backbone=teacher)
    with torch.no_grad():
        teacher_patches = teacher(out.crops.global_crops).patches
    return GramAnchoringLoss(GramAnchoringParams(**params), BuildContext()), out, ctx, teacher_patches


@pytest.mark.parametrize("gram", ["per_image", "batch"])
@pytest.mark.parametrize("remove_negatives", [False, True])
def test_all_tokens_match_the_direct_implementation(gram: str, remove_negatives: bool) -> None:
    loss, out, ctx, teacher = make_case(gram=gram, remove_negatives=remove_negatives)
    expected = naive_gram_loss(out.student_global.patches, teacher, None, gram, remove_negatives)
    assert loss(out, ctx).item() == pytest.approx(expected, rel=1e-5)


@pytest.mark.parametrize("gram", ["per_image", "batch"])
@pytest.mark.parametrize("tokens", ["masked", "unmasked"])
def test_token_restriction_matches_the_direct_implementation(gram: str, tokens: str) -> None:
    loss, out, ctx, teacher = make_case(seed=3, gram=gram, tokens=tokens)
    assert out.masks.any() and not out.masks.any(dim=1).all()  # masked tokens, and crops without any
    selected = out.masks if tokens == "masked" else ~out.masks
    expected = naive_gram_loss(out.student_global.patches, teacher, selected, gram, False)
    assert loss(out, ctx).item() == pytest.approx(expected, rel=1e-5)
    unrestricted = naive_gram_loss(out.student_global.patches, teacher, None, gram, False)
    assert expected != pytest.approx(unrestricted, rel=1e-3)


def test_masked_tokens_without_any_mask_give_zero_still_connected() -> None:
    loss, out, ctx, _ = make_case(tokens="masked", mask_probability=0.0)
    assert not out.masks.any()
    check = assert_loss_contract(loss, out, ctx, expect_gradient=False)
    assert check.value == 0.0


def test_negatives_removal_only_matters_when_similarities_are_negative() -> None:
    loss_plain, out, ctx, _ = make_case(remove_negatives=False)
    loss_clamped = GramAnchoringLoss(GramAnchoringParams(remove_negatives=True), BuildContext())
    assert loss_plain(out, ctx).item() != pytest.approx(loss_clamped(out, ctx).item(), rel=1e-3)
    positive = out.student_global.patches.detach().abs().requires_grad_(True)
    out.student_global.patches = positive
    # The Gram teacher sees the same crops, so make its features positive too: a constant
    # large bias on the final norm moves every feature into the positive orthant.
    with torch.no_grad():
        ctx.teacher_backbone.norm.bias.fill_(10.0)
    plain, clamped = (GramAnchoringLoss(GramAnchoringParams(remove_negatives=r), BuildContext()) for r in (False, True))
    assert plain(out, ctx).item() == pytest.approx(clamped(out, ctx).item(), rel=1e-6)


def test_features_that_rotate_or_rescale_the_teacher_ones_are_not_penalised() -> None:
    loss, out, ctx, teacher = make_case(gram="batch")
    rotation, _ = torch.linalg.qr(torch.randn(EMBED, EMBED, dtype=torch.float64))
    scale = torch.rand(*teacher.shape[:2], 1) + 0.5
    out.student_global.patches = ((teacher.double() @ rotation).float() * scale).requires_grad_(True)
    assert loss(out, ctx).item() == pytest.approx(0.0, abs=1e-10)
    out.student_global.patches = torch.randn_like(teacher).requires_grad_(True)
    assert loss(out, ctx).item() > 1e-3


@pytest.mark.parametrize(("gram", "tokens"), [("per_image", "all"), ("batch", "all"), ("per_image", "masked"),
                                               ("batch", "unmasked")])
def test_follows_the_loss_contract_and_trains_only_patch_tokens(gram: str, tokens: str) -> None:
    loss, out, ctx, _ = make_case(gram=gram, tokens=tokens)
    check = assert_loss_contract(loss, out, ctx)
    assert check.received_gradient("student_global.patches")
    assert not check.received_gradient("student_global.cls")
    assert loss.needs == LossNeeds(patch_tokens=True, masks=tokens != "all")
