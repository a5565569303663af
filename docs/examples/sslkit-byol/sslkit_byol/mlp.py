"""BYOL's projector and predictor: ``Linear -> BatchNorm -> ReLU -> Linear`` (Grill et al. 2020,
section 3.3: a linear layer of 4096 units, batch normalisation, ReLU, and a linear layer to 256).

One head plugin, ``byol_mlp``, serves both. The projector sits under ``model.heads`` (on the
student and, as an EMA copy, on the teacher) and reads the backbone's CLS width
(``BuildContext.embed_dim``); the predictor sits under ``model.student_modules`` (the student
only) and reads the projector's output width: ``input_head: projector`` takes it from
``BuildContext.head_dims``.

The normalisation (``norm``): ``batch`` normalises with the statistics of the rows of the head call
over all processes, on the student and on the always-evaluating teacher alike
(:class:`~sslkit_byol.batch_stats_norm.BatchStatsNorm`); ``batch_per_process`` uses each process's
own rows only; ``layer`` is a LayerNorm (no batch dependence); ``none`` leaves the hidden layer as it is.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from torch import Tensor, nn

from sslkit.components import BuildContext, Head
from sslkit.params import param
from sslkit_byol.batch_stats_norm import BatchStatsNorm

Norm = Literal["batch", "batch_per_process", "layer", "none"]


@dataclass
class BYOLMLPParams:
    """Parameters of the ``byol_mlp`` head."""

    hidden_dim: int = param(4096, "Width of the hidden layer (4096 in BYOL).", ge=1)
    out_dim: int = param(256, "Output width (256 in BYOL: the projection and the prediction).", ge=1)
    input_head: str | None = param(
        None,
        "Name of the head whose output this MLP reads (e.g. projector, for the predictor); null: the backbone's "
        "output (its embedding width).",
    )
    norm: Norm = param(
        "batch",
        "Normalisation after the hidden layer: 'batch' (statistics of the current batch over all processes, in "
        "training and evaluation mode, so the teacher normalises like the student), 'batch_per_process' (each "
        "process's rows only: results depend on the number of processes), 'layer' (LayerNorm) or 'none'.",
    )
    eps: float = param(1e-5, "Epsilon added to the variance of the normalisation.", gt=0.0)


def _norm(kind: Norm, dim: int, eps: float) -> nn.Module:
    if kind == "batch":
        return BatchStatsNorm(dim, eps, across_processes=True)
    if kind == "batch_per_process":
        return BatchStatsNorm(dim, eps, across_processes=False)
    if kind == "layer":
        return nn.LayerNorm(dim, eps=eps)
    return nn.Identity()


def _input_width(params: BYOLMLPParams, ctx: BuildContext) -> int:
    if params.input_head is None:
        if ctx.embed_dim is None:
            raise ValueError("byol_mlp needs the backbone width (BuildContext.embed_dim)")
        return ctx.embed_dim
    if params.input_head not in ctx.head_dims:
        built = ", ".join(sorted(ctx.head_dims)) or "none"
        raise ValueError(f"input_head {params.input_head!r} is not a head built before this one (built: {built}); "
                         "the projector belongs under model.heads, the predictor under model.student_modules")
    return ctx.head_dims[params.input_head]


class BYOLMLP(Head):
    """``x -> Linear(in, hidden) -> norm -> ReLU -> Linear(hidden, out_dim)``: rows ``[M, in]`` -> ``[M, out_dim]``.

    ``in`` is the backbone width or, with ``input_head``, that head's output width. Linear layers
    keep PyTorch's default initialisation.
    """

    def __init__(self, params: BYOLMLPParams, ctx: BuildContext) -> None:
        super().__init__()
        self.out_dim = params.out_dim
        self.net = nn.Sequential(
            nn.Linear(_input_width(params, ctx), params.hidden_dim),
            _norm(params.norm, params.hidden_dim, params.eps),
            nn.ReLU(),
            nn.Linear(params.hidden_dim, params.out_dim),
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)
