"""Linear probe on frozen features with a learning-rate sweep (DINOv2, Oquab et al. 2023, section 7.1).

Protocol: the features are standardised (per dimension, with the mean and standard deviation
of the training split; constant dimensions become 0). A validation split is carved from the
training data, stratified by class and seeded. For every learning rate of the sweep, a
softmax-regression classifier ``logits = x W + b`` (zero-initialised) is trained on the
training split with mini-batch SGD (momentum 0.9, cosine learning-rate decay to 0 over all
steps, optional L2 weight decay on ``W``), minimising the mean cross-entropy. The learning
rate with the best validation top-1 is selected and the *same* classifier (trained on the
training split only, not retrained on train + val) is evaluated on the test set.

All learning rates are trained together as one batched model that sees the same mini-batches,
with the closed-form gradient of the cross-entropy, ``dL/dlogits = (softmax - onehot) / B``,
so a sweep costs about as much as a single run.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from sslkit.eval.labelled_features import checked_labels

MOMENTUM = 0.9
EVAL_CHUNK = 8192  # rows per evaluation matmul: bounds memory for large sweeps and class counts
DEFAULT_LRS: tuple[float, ...] = (0.001, 0.003, 0.01, 0.03, 0.1, 0.3, 1.0)  # the learning-rate sweep


@dataclass(frozen=True)
class LinearProbeResult:
    """Outcome of :func:`linear_probe` (accuracies in percent)."""

    best_lr: float
    val_top1: float  # validation top-1 of the selected learning rate
    test_top1: float
    test_top5: float  # top-min(5, C): 100% with at most 5 classes
    per_lr: dict[float, float]  # validation top-1 of every learning rate of the sweep


def stratified_split(labels: Tensor, val_fraction: float, generator: torch.Generator) -> tuple[Tensor, Tensor]:
    """Indices ``(train, val)``: ``round(val_fraction * n_c)`` random samples of each class ``c`` go
    to validation, but never all samples of a class."""
    order = torch.randperm(labels.shape[0], generator=generator)
    train_parts, val_parts = [], []
    for cls in torch.unique(labels).tolist():
        members = order[labels[order] == cls]
        n_val = min(round(val_fraction * members.shape[0]), members.shape[0] - 1)
        val_parts.append(members[:n_val])
        train_parts.append(members[n_val:])
    train, val = torch.cat(train_parts), torch.cat(val_parts)
    if val.numel() == 0:
        raise ValueError(f"val_fraction={val_fraction} leaves no validation samples")
    return train.sort().values, val.sort().values


def _accuracies(logits: Tensor, labels: Tensor) -> Tensor:
    """Hit counts ``[L, 2]`` (top-1, top-min(5, C)) of ``logits [N, L, C]`` for ``labels [N]``."""
    ranked = logits.topk(min(5, logits.shape[-1]), dim=-1).indices
    hits = ranked == labels[:, None, None]
    return torch.stack([hits[..., 0].sum(0), hits.any(-1).sum(0)], dim=-1)


def linear_probe(
    train_features: Tensor,
    train_labels: Tensor,
    test_features: Tensor,
    test_labels: Tensor,
    *,
    lrs: Sequence[float] = DEFAULT_LRS,
    epochs: int = 30,
    batch_size: int = 256,
    val_fraction: float = 0.1,
    seed: int = 0,
    weight_decay: float = 0.0,
    num_classes: int | None = None,
    progress: Callable[[int, int], object] | None = None,
) -> LinearProbeResult:
    """Train a linear classifier on frozen features for each learning rate; see the module doc.

    ``num_classes`` defaults to the largest label + 1. ``progress`` is called after every epoch
    with ``(epochs_done, training_samples)`` (compatible with
    :meth:`sslkit.monitoring.progress.Progress.update`). Runs on the device of
    ``train_features``; deterministic for a given ``seed`` on a given device. On the best
    validation accuracy tie, the learning rate listed first wins.
    """
    if not lrs or min(lrs) <= 0:
        raise ValueError(f"lrs must be a non-empty list of positive learning rates, got {tuple(lrs)}")
    if not 0.0 < val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in (0, 1), got {val_fraction}")
    if epochs < 1 or batch_size < 1:
        raise ValueError(f"epochs and batch_size must be >= 1, got {epochs} and {batch_size}")
    train_labels, test_labels, num_classes = checked_labels(
        train_features, train_labels, test_features, test_labels, num_classes
    )
    device = train_features.device

    generator = torch.Generator().manual_seed(seed)
    fit_index, val_index = stratified_split(train_labels.cpu(), val_fraction, generator)
    fit_index, val_index = fit_index.to(device), val_index.to(device)
    features = train_features.float()
    fit_x, fit_y = features[fit_index], train_labels[fit_index]
    mean, std = fit_x.mean(0), fit_x.std(0)
    scale = torch.where(std > 1e-6, std.reciprocal(), torch.zeros_like(std))

    def standardise(x: Tensor) -> Tensor:
        return (x.to(device).float() - mean) * scale

    fit_x = standardise(fit_x)
    n_lrs, dim = len(lrs), fit_x.shape[1]
    lr = torch.tensor(list(lrs), dtype=torch.float32, device=device)[:, None].expand(n_lrs, num_classes)
    # Classifier l is weight[:, l * C : (l + 1) * C]: one GEMM per direction for the whole sweep.
    weight = torch.zeros(dim, n_lrs * num_classes, device=device)
    bias = torch.zeros(n_lrs * num_classes, device=device)
    momentum_w, momentum_b = torch.zeros_like(weight), torch.zeros_like(bias)
    n_fit = fit_x.shape[0]
    steps_per_epoch = math.ceil(n_fit / batch_size)
    total_steps = epochs * steps_per_epoch
    step = 0
    for epoch in range(epochs):
        order = torch.randperm(n_fit, generator=generator).to(device)
        for start in range(0, n_fit, batch_size):
            rows = order[start : start + batch_size]
            x, y = fit_x[rows], fit_y[rows]
            logits = torch.addmm(bias, x, weight).view(-1, n_lrs, num_classes)
            grad = torch.softmax(logits, dim=-1)
            grad[torch.arange(y.shape[0], device=device), :, y] -= 1.0
            grad = grad.view(-1, n_lrs * num_classes) / y.shape[0]
            grad_w = x.T @ grad
            if weight_decay:
                grad_w += weight_decay * weight
            momentum_w.mul_(MOMENTUM).add_(grad_w)
            momentum_b.mul_(MOMENTUM).add_(grad.sum(dim=0))
            step_lr = (lr * (0.5 * (1.0 + math.cos(math.pi * step / total_steps)))).reshape(-1)
            weight -= step_lr * momentum_w
            bias -= step_lr * momentum_b
            step += 1
        if progress is not None:
            progress(epoch + 1, n_fit)

    def accuracy(x: Tensor, y: Tensor, first: int, count: int) -> Tensor:
        """Top-1 / top-5 accuracy (percent) ``[count, 2]`` of classifiers ``first .. first + count - 1``,
        ``EVAL_CHUNK`` samples at a time."""
        columns = slice(first * num_classes, (first + count) * num_classes)
        hits = torch.zeros(count, 2, dtype=torch.int64, device=device)
        for start in range(0, x.shape[0], EVAL_CHUNK):
            chunk = standardise(x[start : start + EVAL_CHUNK])
            logits = torch.addmm(bias[columns], chunk, weight[:, columns]).view(-1, count, num_classes)
            hits += _accuracies(logits, y[start : start + EVAL_CHUNK].to(device))
        return 100.0 * hits.double() / x.shape[0]

    val_top1 = accuracy(features[val_index], train_labels[val_index], 0, n_lrs)[:, 0]
    per_lr = {float(value): float(acc) for value, acc in zip(lrs, val_top1.tolist(), strict=True)}
    best = int(val_top1.argmax())  # first maximum
    test_top1, test_top5 = accuracy(test_features, test_labels, best, 1)[0].tolist()
    return LinearProbeResult(
        best_lr=float(lrs[best]),
        val_top1=float(val_top1[best]),
        test_top1=test_top1,
        test_top5=test_top5,
        per_lr=per_lr,
    )
