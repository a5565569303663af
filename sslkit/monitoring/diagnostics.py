"""Training-health diagnostics: cheap collapse indicators computed from tensors a step already has.

Self-distillation can collapse in two ways (DINO, Caron et al. 2021, section 5.3): to the
*uniform* distribution (every teacher output has entropy ``ln K``: centering dominates) or to
*one dimension* (every sample puts its mass on the same output dimension: sharpening dominates).
The losses that distil teacher targets report the indicators of these two (``teacher_entropy``,
``entropy_gap``, ``target_coverage``, see their ``diagnostics()``); this module computes those of
the representation itself, which can collapse to a constant vector or to a low-dimensional subspace,
and :class:`CollapseDetector` turns all of them into warnings.

Every function here returns a 0-dim float32 tensor on the input's device and never calls
``.item()``: the engine decides when to synchronise (at logging steps) and passes plain floats
to :class:`CollapseDetector`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from sslkit.params import param


def feature_std(features: Tensor) -> Tensor:
    """Mean over dimensions of the standard deviation across the batch of the L2-normalised
    ``features [M, D]`` (the collapse indicator of the DINO/SimSiam analyses): 0 for a constant
    representation, about ``1 / sqrt(D)`` for isotropic features. Needs ``M >= 2``."""
    return F.normalize(features.float(), dim=-1).std(dim=0).mean()


def effective_rank(features: Tensor) -> Tensor:
    """Effective rank (Roy & Vetterli, 2007) of ``features [M, D]`` as given (not centred):
    ``exp(-sum_i p_i ln p_i)`` with ``p_i = s_i / sum_j s_j`` the normalised singular values.
    A rank-``r`` matrix with equal singular values gives ``r``; identical rows give 1.
    Costs one SVD of ``[M, D]``: compute it at logging steps only."""
    singular = torch.linalg.svdvals(features.float())
    p = singular / singular.sum().clamp_min(torch.finfo(torch.float32).tiny)
    return torch.exp(-torch.xlogy(p, p).sum())


def feature_health(features: Tensor) -> dict[str, Tensor]:
    """Collapse indicators of backbone features ``[M, D]`` (``M >= 2``): ``feature_std``,
    ``feature_std_ratio`` (``feature_std * sqrt(D)``, about 1 when isotropic) and ``effective_rank``."""
    std = feature_std(features)
    return {"feature_std": std, "feature_std_ratio": std * math.sqrt(features.shape[-1]),
            "effective_rank": effective_rank(features)}


def health_metrics(features: Tensor) -> dict[str, Tensor]:
    """The representation diagnostics of ``features`` (backbone CLS tokens ``[M, D]``), under the
    names :class:`CollapseDetector` reads: ``feature_std``, ``feature_std_ratio``, ``effective_rank``."""
    std = feature_std(features)
    return {"feature_std": std, "feature_std_ratio": std * math.sqrt(features.shape[-1]),
            "effective_rank": effective_rank(features)}


@dataclass
class CollapseParams:
    """Thresholds of :class:`CollapseDetector` (the recipe's ``monitor.collapse`` section)."""

    min_entropy_gap: float = param(
        0.01, "Uniform collapse when ln K - teacher entropy < this fraction of ln K.", ge=0.0, le=1.0
    )
    min_target_coverage: float = param(
        0.01,
        "One-dimension collapse when a loss's target_coverage ((output dimensions that are some sample's argmax "
        "- 1) / (min(M, K) - 1)) is below this.",
        ge=0.0,
        le=1.0,
    )
    min_feature_std_ratio: float = param(
        0.05, "Representation collapse when feature_std * sqrt(D) is below this (about 1 when isotropic).", ge=0.0
    )
    min_effective_rank: float = param(
        1.5, "Dimensional collapse when the effective rank of the CLS features is below this.", ge=0.0
    )
    patience: int = param(3, "Warn only after a condition held for this many consecutive checks.", ge=1)
    min_step: int = param(0, "Ignore checks before this step (an untrained model can look collapsed).", ge=0)


class CollapseDetector:
    """Turns diagnostic values into warnings when a collapse condition persists.

    ``check(values, step)`` reads the keys produced by :func:`health_metrics` and by the losses'
    diagnostics (``teacher_entropy``, ``entropy_gap``, ``target_coverage``), optionally under a
    prefix (``"loss_dino/teacher_entropy"``: each prefix is checked separately); other keys are
    ignored, and a non-finite value is itself reported. A condition is reported at every check
    once it has held for ``patience`` consecutive checks; a check where it does not hold resets
    its count.
    """

    def __init__(self, params: CollapseParams | None = None) -> None:
        self.params = params or CollapseParams()
        self._streaks: dict[str, int] = {}

    def _conditions(self, group: Mapping[str, float]) -> dict[str, str]:
        """Condition name -> description, for every condition that holds in ``group``."""
        p = self.params
        found: dict[str, str] = {}
        for key, value in group.items():
            if not math.isfinite(value):
                found[f"nonfinite_{key}"] = f"{key} is {value}"
        entropy, gap = group.get("teacher_entropy"), group.get("entropy_gap")
        if entropy is not None and gap is not None and math.isfinite(entropy + gap):
            log_k = entropy + gap
            if gap < p.min_entropy_gap * log_k:
                found["uniform"] = (
                    f"teacher entropy {entropy:.2f} is within {max(gap, 0.0):.2g} of ln K = {log_k:.2f}: "
                    "uniform collapse"
                )
        coverage = group.get("target_coverage")
        # Under uniform collapse the argmax is arbitrary: report the uniform collapse only.
        if coverage is not None and coverage < p.min_target_coverage and "uniform" not in found:
            found["one_dimension"] = (
                f"target coverage {coverage:.3g} < {p.min_target_coverage:g}: "
                "the teacher picks (almost) the same output dimension for every sample, "
                "one-dimension collapse"
            )
        ratio = group.get("feature_std_ratio")
        if ratio is not None and ratio < p.min_feature_std_ratio:
            found["feature_std"] = (
                f"feature std * sqrt(D) = {ratio:.3g} < {p.min_feature_std_ratio:g}: "
                "the features are (nearly) identical across the batch, representation collapse"
            )
        rank = group.get("effective_rank")
        if rank is not None and rank < p.min_effective_rank:
            found["effective_rank"] = f"effective rank {rank:.3g} < {p.min_effective_rank:g}: dimensional collapse"
        return found

    def check(self, values: Mapping[str, float], step: int) -> list[str]:
        """Warnings for the conditions that held for at least ``patience`` consecutive checks."""
        if step < self.params.min_step:
            return []
        groups: dict[str, dict[str, float]] = {}
        for key, value in values.items():
            prefix, _, name = key.rpartition("/")
            groups.setdefault(prefix, {})[name] = float(value)
        current: dict[str, str] = {}
        for prefix, group in groups.items():
            for condition, text in self._conditions(group).items():
                current[f"{prefix}/{condition}"] = f"{prefix}: {text}" if prefix else text
        self._streaks = {key: self._streaks.get(key, 0) + 1 for key in current}
        return [
            f"step {step}: {text} ({_checks(self._streaks[key])} in a row)"
            for key, text in current.items()
            if self._streaks[key] >= self.params.patience
        ]


def _checks(n: int) -> str:
    return "1 check" if n == 1 else f"{n} checks"
