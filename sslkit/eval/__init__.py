"""Evaluation of frozen backbone features: kNN (DINO, Caron et al. 2021, section 4.1) and linear probe (DINOv2, Oquab
et al. 2023, section 7)."""

from sslkit.eval.features import extract_features
from sslkit.eval.knn import knn_classify
from sslkit.eval.linear import LinearProbeResult, linear_probe

__all__ = ["LinearProbeResult", "extract_features", "knn_classify", "linear_probe"]
