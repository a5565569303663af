"""A clustering loss on patch tokens with learnable prototypes (related to CAPI, Darcet et al. 2025,
section 3; Sinkhorn-Knopp assignments as in SwAV, Caron et al. 2020, section 3.1).

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
from sslkit.components import BuildContext, Loss, Output, StepContext, StepInputs
from sslkit.outputs import Positions
from sslkit.params import param
from sslkit_plugins.losses.ibot import per_token_weights
from sslkit_plugins.losses.sinkhorn_knopp import sinkhorn_knopp
from sslkit_plugins.losses.target_health import target_health


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
    teacher_temp: float = param(
        0.07,
        "Temperature of the teacher's Sinkhorn-Knopp (schedule it in the recipe, e.g. {schedule: linear, "
        "start: 0.04, end: 0.07, length: 30, unit: epochs}).",
        gt=0.0,
    )
    sinkhorn_iterations: int = param(3, "Sinkhorn-Knopp iterations for the teacher assignments.", ge=1)


class PatchPrototypeLoss(Loss):
    """Patch-prototype loss: the student predicts, at masked (or all) patch positions, the
    teacher's Sinkhorn-Knopp assignment of the same patch to learnable prototypes.

    Inputs: ``student`` and ``teacher``, the backbone patch tokens of the global crops: in masked
    mode the masked positions (``[M, D]``, ``masks.nonzero()`` order) and ``masks``
    (``[n_global * B, N]``); in ``all`` mode every position (``[n_global * B, N, D]``). The prototypes
    (``prototypes``, ``[num_prototypes, embed_dim]``, trunc-normal std 0.02) are trained by the
    optimizer with the student. Diagnostics, on logging steps: the health of the assignments
    (:mod:`sslkit_plugins.losses.target_health`: ``teacher_entropy``, ``entropy_gap``,
    ``target_usage``, ``target_coverage``).
    """

    def __init__(self, params: PatchPrototypeLossParams, ctx: BuildContext) -> None:
        super().__init__()
        if ctx.embed_dim is None:
            raise ValueError("the patch_prototype loss needs the backbone width (BuildContext.embed_dim)")
        self.params = params
        positions: Positions = "masked" if params.mode == "masked" else "all"
        self.inputs = {
            "student": Output("patches", model="student", positions=positions),
            "teacher": Output("patches", model="teacher", positions=positions),
        }
        if params.mode == "masked":
            self.inputs["masks"] = Output("masks")
        self.prototypes = nn.Parameter(
            nn.init.trunc_normal_(torch.empty(params.num_prototypes, ctx.embed_dim), std=0.02)
        )
        self._health: dict[str, Tensor] = {}

    def _selected_tokens(self, inputs: StepInputs) -> tuple[Tensor, Tensor, Tensor]:
        """Student and teacher tokens ``[M, D]`` and the selection mask ``[n_global * B, N]``."""
        student, teacher = inputs["student"], inputs["teacher"]
        if self.params.mode == "all":
            selected = torch.ones(student.shape[:2], dtype=torch.bool, device=student.device)
            return student.flatten(0, 1), teacher.flatten(0, 1), selected
        return student, teacher, inputs["masks"]

    def forward(self, inputs: StepInputs, ctx: StepContext) -> Tensor:
        p = self.params
        student, teacher, selected = self._selected_tokens(inputs)
        if student.shape != teacher.shape:
            raise ValueError(
                f"patch_prototype loss: student and teacher patch tokens differ in shape: "
                f"{tuple(student.shape)} vs {tuple(teacher.shape)}"
            )
        prototypes = F.normalize(self.prototypes.float(), dim=-1)
        with torch.no_grad():
            teacher_scores = F.normalize(teacher.float(), dim=-1) @ prototypes.T
            targets = sinkhorn_knopp(teacher_scores, p.teacher_temp, p.sinkhorn_iterations)
        if ctx.logging_step:
            self._health = target_health(targets)
        student_scores = F.normalize(student.float(), dim=-1) @ prototypes.T
        log_probs = torch.log_softmax(student_scores / p.student_temp, dim=-1)
        token_losses = -(targets * log_probs).sum(dim=-1)
        if p.normalization == "per_sample":
            return (token_losses * per_token_weights(selected, student.shape[0])).sum() / selected.shape[0]
        n_global_tokens = distributed.all_reduce_sum(token_losses.new_tensor(float(student.shape[0])))
        return token_losses.sum() * distributed.world_size() / n_global_tokens.clamp_min(1.0)

    def diagnostics(self) -> dict[str, float | Tensor]:
        return dict(self._health)
