"""A clustering loss on patch tokens with learnable prototypes (reference section 3, related to
CAPI, Darcet et al. 2025).

With ``P`` prototypes ``w_p`` (an ``[P, D]`` parameter of the loss, rows L2-normalised in use) and
L2-normalised patch tokens:

- teacher (no gradient): ``Q = SinkhornKnopp(t . w / T_t)`` over the selected teacher patch
  tokens of the global batch (every token a distribution over prototypes, prototypes used
  evenly over the batch);
- student: ``log q = log_softmax(s . w / T_s)`` for the same crops and positions;
- per-token loss ``l = -sum_p Q[p] log q[p]``.

Selected tokens: ``masked`` mode, the masked positions of the global crops (the student saw
the mask token there; ``masks.nonzero()`` order); ``all`` mode, every patch of every global
crop.

Normalisation over this process's ``C = n_global * B`` global crops, tokens ``i`` of crop ``c``:

- ``per_token``: ``loss = W * sum_i l_i / M_global`` (``M_global``: selected tokens of the global
  batch, ``W``: number of processes): the mean over every selected token of the global batch,
  split so that the mean of the per-process losses (what DDP averages) is that global mean;
- ``per_sample``: ``loss = (1 / C) * sum_c sum_{i in c} l_i / m_c`` (``m_c``: selected tokens of
  crop ``c``; crops without any count 0 but stay in ``C``), as the iBOT loss: every crop
  contributes equally whatever its mask ratio.

Gradients reach the prototypes and the student patch tokens, never the teacher.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from sslkit import distributed
from sslkit.components import BuildContext, Loss, LossNeeds, StepContext, StepOutputs
from sslkit.params import param
from sslkit_plugins.losses.ibot import per_token_weights
from sslkit_plugins.losses.sinkhorn_knopp import sinkhorn_knopp
from sslkit_plugins.losses.teacher_targets import mean_entropy


@dataclass
class PatchPrototypeLossParams:
    """Parameters of the ``patch_prototype`` loss."""

    num_prototypes: int = param(1024, "Number of learnable prototypes P.", ge=2)
    mode: Literal["masked", "all"] = param(
        "masked",
        "'masked': predict at the masked positions of the global crops (needs masks); 'all': at every "
        "patch position of the global crops.",
    )
    normalization: Literal["per_token", "per_sample"] = param(
        "per_token",
        "'per_token': mean over all selected tokens of the global batch; 'per_sample': each token weighted "
        "1 / (selected tokens of its crop), divided by the number of global crops.",
    )
    student_temp: float = param(0.1, "Temperature of the student's softmax over prototypes.", gt=0.0)
    teacher_temp: float | None = param(
        None, "Temperature of the teacher's Sinkhorn-Knopp; null: the scheduled teacher temperature.", gt=0.0
    )
    sinkhorn_iterations: int = param(3, "Sinkhorn-Knopp iterations for the teacher assignments.", ge=1)


class PatchPrototypeLoss(Loss):
    """Patch-prototype loss: the student predicts, at masked (or all) patch positions, the
    teacher's Sinkhorn-Knopp assignment of the same patch to learnable prototypes.

    Reads ``out.teacher_global.patches`` and ``out.student_global.patches``
    (``[n_global * B, N, D]``) and, in masked mode, ``out.masks``. The prototypes
    (``prototypes``, ``[num_prototypes, embed_dim]``, trunc-normal std 0.02) are trained by the
    optimizer with the student. Diagnostics: ``teacher_entropy`` (mean entropy of the
    assignments, nats).
    """

    def __init__(self, params: PatchPrototypeLossParams, ctx: BuildContext) -> None:
        super().__init__()
        if ctx.embed_dim is None:
            raise ValueError("the patch_prototype loss needs the backbone width (BuildContext.embed_dim)")
        self.params = params
        self.needs = LossNeeds(patch_tokens=True, masks=params.mode == "masked")
        self.prototypes = nn.Parameter(
            nn.init.trunc_normal_(torch.empty(params.num_prototypes, ctx.embed_dim), std=0.02)
        )
        self._teacher_entropy: Tensor | None = None

    def _selected_tokens(self, out: StepOutputs) -> tuple[Tensor, Tensor, Tensor]:
        """Student and teacher tokens ``[M, D]`` and the selection mask ``[n_global * B, N]``."""
        student, teacher = out.student_global.patches, out.teacher_global.patches
        if student is None or teacher is None:
            raise ValueError("the patch_prototype loss needs the backbone's patch tokens (got None)")
        if self.params.mode == "all":
            selected = torch.ones(student.shape[:2], dtype=torch.bool, device=student.device)
            return student.flatten(0, 1), teacher.flatten(0, 1), selected
        if out.masks is None:
            raise ValueError(
                "the patch_prototype loss in masked mode needs the step's masks (StepOutputs.masks is None)"
            )
        return student[out.masks], teacher[out.masks], out.masks

    def forward(self, out: StepOutputs, ctx: StepContext) -> Tensor:
        p = self.params
        student, teacher, selected = self._selected_tokens(out)
        prototypes = F.normalize(self.prototypes.float(), dim=-1)
        with torch.no_grad():
            teacher_scores = F.normalize(teacher.float(), dim=-1) @ prototypes.T
            targets = sinkhorn_knopp(teacher_scores, p.teacher_temp or ctx.teacher_temp, p.sinkhorn_iterations)
        self._teacher_entropy = mean_entropy(targets)
        student_scores = F.normalize(student.float(), dim=-1) @ prototypes.T
        log_probs = torch.log_softmax(student_scores / p.student_temp, dim=-1)
        token_losses = -(targets * log_probs).sum(dim=-1)
        if p.normalization == "per_sample":
            return (token_losses * per_token_weights(selected, student.shape[0])).sum() / selected.shape[0]
        n_global_tokens = distributed.all_reduce_sum(token_losses.new_tensor(float(student.shape[0])))
        return token_losses.sum() * distributed.world_size() / n_global_tokens.clamp_min(1.0)

    def diagnostics(self) -> dict[str, float | Tensor]:
        return {} if self._teacher_entropy is None else {"teacher_entropy": self._teacher_entropy}
