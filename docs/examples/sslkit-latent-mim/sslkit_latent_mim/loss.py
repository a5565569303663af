"""The ``latent_mim`` loss: latent masked prediction (data2vec 2.0, Baevski et al. 2023; I-JEPA, Assran
et al. 2023).

The EMA teacher sees the full global crop and provides, at every patch position, the target
``y_t = LN(mean_{l=L-K+1..L} IN(a_t^l))`` (data2vec, section 3.3; data2vec 2.0, section 3; see
:mod:`sslkit_latent_mim.targets`). The student sees the same crop with the masked patches dropped
from the sequence (``student_masking: drop``, data2vec 2.0 / I-JEPA) or replaced by the backbone's
mask token (``replace``, data2vec 1.0), and the student-only predictor
(:mod:`sslkit_latent_mim.predictor`) regresses ``y`` at the masked positions:

    loss = (1 / M_global) * sum over masked tokens t of the global batch of  d(prediction_t, y_t)

with ``d`` the squared error averaged over channels (``mse``, data2vec 2.0 / I-JEPA use the L2
loss) or the smooth L1 loss with threshold ``beta`` averaged over channels (``smooth_l1``, data2vec
1.0 section 3.4). ``M_global`` is the number of masked tokens of the global batch (an all-reduce),
and each process returns its sum times the number of processes over ``M_global``: the mean of the
per-process values, which DDP's gradient averaging optimises, is the global-batch loss whatever the
number of processes.

``cls_weight > 0`` adds a global term after data2vec 2.0's CLS loss: the student's CLS token (same
pass) regresses ``LN(mean_t (1/K) sum_l a_t^l)``, the layer-normalised mean over the crop's positions of
the raw top-K block average (not of ``y``: instance normalisation makes ``y`` zero-mean over positions,
so its mean carries almost nothing), with the same distance, averaged over the global batch's crops,
weighted by ``cls_weight``. sslkit's kNN evaluation reads the teacher's CLS token, which the patch term
alone trains only through attention.

Declared inputs: ``predictions`` (kind ``latent_predictions``: the student's masked pass through the
predictor, which the request names in ``modules``), ``targets`` (kind ``latent_targets`` on the teacher's
unmasked pass, ``blocks`` the last ``K``, ``positions="masked"``), ``masks`` (for the diagnostics) and,
with ``cls_weight > 0``, ``student_cls`` and ``target_blocks`` (kind ``blocks``: the raw top-K average
``[C, N, D]`` of the same teacher pass).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor

from sslkit import distributed
from sslkit.components import BuildContext, Loss, Output, StepContext, StepInputs
from sslkit.params import param
from sslkit_latent_mim.targets import LAYER_NORM_EPS, BlockNorm, TargetNorm


@dataclass
class LatentMIMParams:
    """Parameters of the ``latent_mim`` loss."""

    predictor: str = param("predictor", "Name of the latent_predictor under model.student_modules.")
    top_k: int = param(4, "K: the teacher's last K blocks are averaged into the targets (data2vec: 6 of 12 for "
                          "ViT-B; data2vec 2.0: 10 of 12).", ge=1)
    block_norm: BlockNorm = param("instance", "Normalisation of each teacher block output before the average: "
                                              "instance (data2vec 2.0), layer (data2vec 1.0 vision) or none.")
    target_norm: TargetNorm = param("layer", "Normalisation of the averaged target: layer (data2vec 2.0) or none.")
    student_masking: Literal["drop", "replace"] = param(
        "drop", "drop: masked patches are removed from the student's sequence (data2vec 2.0, I-JEPA); replace: "
                "they enter as the backbone's mask token (data2vec 1.0).")
    distance: Literal["mse", "smooth_l1"] = param("mse", "Regression loss per masked token: squared error or smooth "
                                                         "L1, each averaged over channels.")
    beta: float = param(1.0, "Threshold of the smooth L1 loss (quadratic below it).", gt=0.0)
    cls_weight: float = param(0.0, "Weight of the global term: the student's CLS regresses the layer-normalised "
                                   "mean over the crop's positions of the teacher's top-K block average (after "
                                   "data2vec 2.0's CLS loss); 0: no CLS term.", ge=0.0)


def regression_error(prediction: Tensor, target: Tensor, distance: str, beta: float) -> Tensor:
    """Per-row error ``[M]`` (float32) between ``prediction`` and ``target`` ``[M, D]``, averaged over channels."""
    p, t = prediction.float(), target.detach().float()
    if distance == "mse":
        return (p - t).square().mean(dim=-1)
    return F.smooth_l1_loss(p, t, reduction="none", beta=beta).mean(dim=-1)


def global_mean(total: Tensor, count: int) -> Tensor:
    """``total`` (this process's sum) over the global count, times the number of processes: averaged over
    processes (as DDP averages gradients) it is the global-batch mean."""
    counts = distributed.all_reduce_sum(torch.tensor(float(count), device=total.device))
    return total * distributed.world_size() / counts.clamp_min(1.0)


class LatentMIMLoss(Loss):
    """Latent masked prediction: the predictor's outputs at the masked positions regress the EMA teacher's
    normalised top-K block average there (see the module doc). Diagnostics: ``masked_fraction`` (masked
    share of the patches), ``target_std`` and ``prediction_std`` (mean per-channel standard deviation
    over the masked tokens: a collapsing predictor drives the latter to 0), and ``cls`` when enabled."""

    def __init__(self, params: LatentMIMParams, ctx: BuildContext) -> None:
        super().__init__()
        self.params = params
        top = tuple(range(-params.top_k, 0))
        self.inputs = {
            "predictions": Output("latent_predictions", masking=params.student_masking, positions="masked",
                                  modules=(params.predictor,)),
            "targets": Output("latent_targets", model="teacher", masking="none", positions="masked", blocks=top,
                              options=(("block_norm", params.block_norm), ("target_norm", params.target_norm))),
            "masks": Output("masks"),
        }
        if params.cls_weight > 0:
            self.inputs["student_cls"] = Output("cls", masking=params.student_masking)
            self.inputs["target_blocks"] = Output("blocks", model="teacher", masking="none", blocks=top)
        self._diagnostics: dict[str, float | Tensor] = {}

    def forward(self, inputs: StepInputs, ctx: StepContext) -> Tensor:
        masks = inputs["masks"]
        predictions = inputs["predictions"]
        masked_targets = inputs["targets"]
        if predictions.shape != masked_targets.shape:
            raise ValueError(f"latent_mim: {tuple(predictions.shape)} predictions for {tuple(masked_targets.shape)} "
                             "masked targets; the predictor's out_dim must be the backbone width")
        errors = regression_error(predictions, masked_targets, self.params.distance, self.params.beta)
        loss = global_mean(errors.sum(), errors.numel())
        cls_term = None
        if self.params.cls_weight > 0:
            summary = inputs["target_blocks"].float().mean(dim=1)
            cls_target = F.layer_norm(summary, summary.shape[-1:], eps=LAYER_NORM_EPS)
            cls_errors = regression_error(inputs["student_cls"], cls_target, self.params.distance, self.params.beta)
            cls_term = global_mean(cls_errors.sum(), cls_errors.numel())
            loss = loss + self.params.cls_weight * cls_term
        if ctx.logging_step:
            with torch.no_grad():
                self._diagnostics = {
                    "masked_fraction": masks.float().mean(),
                    "target_std": masked_targets.float().std(dim=0).mean() if len(masked_targets) > 1 else 0.0,
                    "prediction_std": predictions.float().std(dim=0).mean() if len(predictions) > 1 else 0.0,
                }
                if cls_term is not None:
                    self._diagnostics["cls"] = cls_term.detach()
        return loss

    def diagnostics(self) -> dict[str, float | Tensor]:
        return dict(self._diagnostics)
