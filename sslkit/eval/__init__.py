"""Evaluation of frozen backbone features: kNN and linear probe (reference section 9)."""

from sslkit.eval.features import extract_features
from sslkit.eval.knn import knn_classify
from sslkit.eval.linear import LinearProbeResult, linear_probe

__all__ = ["LinearProbeResult", "extract_features", "knn_classify", "linear_probe"]
