"""The BYOL loss (Grill et al. 2020, section 3.1, eq. 2).

The online network (student) maps view ``v`` through the backbone, the projector and the
predictor to ``q(v)``; the target network (EMA teacher) maps the other view ``v'`` through its
backbone and projector to ``z'(v')``. With both L2-normalised,

    L(v, v') = || q(v)/||q(v)|| - z'(v')/||z'(v')|| ||^2 = 2 - 2 cos(q(v), z'(v'))

and BYOL symmetrises it, ``L_BYOL = L(v, v') + L(v', v)`` (each student view against the *other*
view's teacher projection), averaged over the images. There is no centering and there are no
prototypes; the target receives no gradient (stop-gradient), and the EMA of the online weights
(``teacher.momentum`` -> ``teacher.momentum_end``) is the target.

Distributed runs: every process holds the same number of images, so the mean over this
process's images is its share of the global-batch mean (DDP averages the gradients).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from sslkit.components import BuildContext, Loss, Output, StepContext, StepInputs
from sslkit.params import param


@dataclass
class BYOLLossParams:
    """Parameters of the ``byol`` loss."""

    projector: str = param("projector", "Name of the projector head (under model.heads: student and teacher).")
    predictor: str = param("predictor", "Name of the predictor (under model.student_modules: the student only).")
    eps: float = param(1e-12, "Epsilon of the L2 normalisations.", gt=0.0)


def byol_loss(prediction: Tensor, target: Tensor, n_views: int = 2, eps: float = 1e-12) -> Tensor:
    """Symmetrised normalised MSE of eq. 2: ``sum over the two views of (2 - 2 cos(q(v), z(v')))``,
    averaged over the images.

    ``prediction`` (student, view-major ``[2 * B, K]``: row ``v * B + b`` is view ``v`` of image
    ``b``) is compared with ``target`` (teacher, same layout, treated as a constant) of the other
    view of the same image. Computed in float32.
    """
    if n_views != 2:
        raise ValueError(f"BYOL compares two views, got {n_views} global crops")
    if prediction.shape != target.shape or prediction.dim() != 2 or prediction.shape[0] % 2:
        raise ValueError(f"expected prediction and target of one shape [2 * B, K], got {tuple(prediction.shape)} "
                         f"and {tuple(target.shape)}")
    batch = prediction.shape[0] // 2
    q = F.normalize(prediction.float(), dim=-1, eps=eps)
    z_other_view = F.normalize(target.detach().float(), dim=-1, eps=eps).roll(batch, dims=0)
    return (2.0 - 2.0 * (q * z_other_view).sum(dim=-1)).sum() / batch


class BYOLLoss(Loss):
    """BYOL: ``2 - 2 cos`` between the student's prediction of each global view and the teacher's
    projection of the other view, summed over the two views and averaged over the images.

    Inputs: ``prediction``, the student's CLS tokens of the global crops through ``projector`` then
    ``predictor`` (``[2 * B, K]``), and ``target``, the teacher's CLS tokens of the global crops
    through ``projector`` (``[2 * B, K]``). Diagnostics: ``cosine`` (mean cosine of the compared
    pairs) and ``target_std`` (per-dimension standard deviation of the L2-normalised targets over
    the batch, times sqrt(K): about 1 for spread targets, 0 when the targets collapse to one point).
    """

    def __init__(self, params: BYOLLossParams, ctx: BuildContext) -> None:
        super().__init__()
        if ctx.n_global_crops != 2:
            raise ValueError(f"byol compares two global crops, the augmentation makes {ctx.n_global_crops} "
                             "(set data.augmentation.n_global: 2)")
        self.params = params
        self.inputs = {
            "prediction": Output("cls", model="student", crops="global", heads=(params.projector, params.predictor)),
            "target": Output("cls", model="teacher", crops="global", heads=(params.projector,)),
        }
        self._diagnostics: dict[str, Tensor] = {}

    def forward(self, inputs: StepInputs, ctx: StepContext) -> Tensor:
        prediction, target = inputs["prediction"], inputs["target"]
        loss = byol_loss(prediction, target, ctx.n_global, self.params.eps)
        if ctx.logging_step:
            with torch.no_grad():
                z = F.normalize(target.float(), dim=-1, eps=self.params.eps)
                self._diagnostics = {
                    "cosine": 1.0 - loss.detach() / (2.0 * ctx.n_global),
                    "target_std": z.std(dim=0).mean() * z.shape[-1] ** 0.5,
                }
        return loss

    def diagnostics(self) -> dict[str, float | Tensor]:
        return dict(self._diagnostics)
