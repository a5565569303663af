"""Data loading: training batches by step, evaluation batches, and datasets from paths."""

from __future__ import annotations

from sslkit.data.eval_loader import EvalLoader, build_eval_loader
from sslkit.data.loader import TrainBatch, TrainLoader, build_train_loader
from sslkit.data.resolve import dataset_from_path
from sslkit.data.sampler import StepBatchSampler, epoch_permutation

__all__ = [
    "EvalLoader",
    "StepBatchSampler",
    "TrainBatch",
    "TrainLoader",
    "build_eval_loader",
    "build_train_loader",
    "dataset_from_path",
    "epoch_permutation",
]
