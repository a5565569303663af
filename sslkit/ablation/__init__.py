"""Ablations: run named variants of a base recipe over several seeds and compare them.

``sslkit ablate ABLATION.yaml`` (see :mod:`sslkit.ablation.spec` for the file format) trains
every (variant, seed) run resumably and writes ``summary.md`` / ``summary.csv``, loss and
accuracy plots, and a TensorBoard layout that overlays the variants.
"""

from sslkit.ablation.runner import AblationOutcome, AblationRunner, PlannedRun
from sslkit.ablation.spec import Ablation, AblationEval, AblationSpec, Variant, load_ablation

__all__ = [
    "Ablation",
    "AblationEval",
    "AblationOutcome",
    "AblationRunner",
    "AblationSpec",
    "PlannedRun",
    "Variant",
    "load_ablation",
]
