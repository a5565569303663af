"""The Gram-anchoring error between two sets of patch features (DINOv3, Siméoni et al. 2025,
"Gram anchoring", eq. 3).

For L2-normalised patch features ``X`` (rows are patches), the Gram matrix ``G = X X^T`` holds
the cosine similarity of every pair of patches. Gram anchoring penalises
``|| G_student - G_teacher ||_F^2``: the student may change its features freely as long as
the patches keep the similarity structure that the Gram teacher gives them.

Two ways to form the matrices:

- ``per_image``: one ``N x N`` matrix per crop (``[C, N, N]``), patches compared within their crop;
- ``batch``: one ``T x T`` matrix over all ``T`` patches of the batch together (patches of
  different crops compared too; memory grows with ``T^2``).

``pairs`` restricts the error to pairs of selected tokens (``i`` and ``j`` both selected, within
the crop for ``per_image``); ``remove_negatives`` sets negative similarities to zero in both
matrices before the comparison.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor

GramMode = Literal["per_image", "batch"]


def gram_squared_error(student: Tensor, teacher: Tensor, tokens: Tensor | None, gram: GramMode,
                       remove_negatives: bool) -> tuple[Tensor, Tensor]:
    """Sum of squared Gram differences and the number of compared pairs.

    ``student`` and ``teacher``: patch features ``[C, N, D]`` of the same crops (``teacher`` is
    treated as a constant); ``tokens``: bool ``[C, N]`` selecting the tokens to compare, or
    ``None`` for all. Computed in float32. Returns ``(sum, count)`` as 0-dim tensors, so that
    the caller can normalise over more than this process's pairs.
    """
    if student.shape != teacher.shape:
        raise ValueError(f"student and Gram-teacher patch features differ in shape: {tuple(student.shape)} vs "
                         f"{tuple(teacher.shape)}")
    s = F.normalize(student.float(), dim=-1)
    t = F.normalize(teacher.detach().float(), dim=-1)
    if gram == "batch":
        s = s[tokens] if tokens is not None else s.flatten(0, 1)
        t = t[tokens] if tokens is not None else t.flatten(0, 1)
        g_student, g_teacher = s @ s.T, t @ t.T
        pairs = None
    else:
        g_student, g_teacher = s @ s.transpose(1, 2), t @ t.transpose(1, 2)
        pairs = tokens.unsqueeze(2) & tokens.unsqueeze(1) if tokens is not None else None
    if remove_negatives:
        g_student, g_teacher = g_student.clamp_min(0.0), g_teacher.clamp_min(0.0)
    squared = (g_student - g_teacher).square()
    if pairs is None:
        return squared.sum(), torch.tensor(float(squared.numel()), device=squared.device)
    return torch.where(pairs, squared, 0.0).sum(), pairs.sum().float()
