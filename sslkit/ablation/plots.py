"""The ablation's figures: one loss-curve plot per loss term, and accuracy bars with error bars.

Curves are the mean over seeds at the steps every seed of the variant logged, with a band of
± one sample standard deviation when there are several seeds. Figures are drawn with
matplotlib's Agg canvas directly (no pyplot, no global backend switch), so this works
headless and inside other programs.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from sslkit.ablation.records import RunRecord
from sslkit.ablation.summary import ACCURACY_COLUMNS, SHOWN_ACCURACIES, VariantRow


def mean_curve(curves: Sequence[dict[int, float]]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(steps, mean, std)`` over the steps present in every curve (std 0 for a single curve)."""
    if not curves:
        return np.zeros(0), np.zeros(0), np.zeros(0)
    steps = sorted(set.intersection(*(set(c) for c in curves)))
    values = np.array([[c[s] for s in steps] for c in curves], dtype=np.float64).reshape(len(curves), len(steps))
    std = values.std(axis=0, ddof=1) if len(curves) > 1 else np.zeros(len(steps))
    return np.array(steps), values.mean(axis=0), std


def _save(figure: Figure, path: Path) -> None:
    FigureCanvasAgg(figure)
    figure.savefig(path, dpi=110)


def plot_losses(
    variants: Sequence[str], records: Sequence[RunRecord], terms: Sequence[str], output_dir: Path
) -> list[Path]:
    """``loss_<term>.png`` for every term: every variant's mean curve over seeds."""
    written = []
    for term in terms:
        figure = Figure(figsize=(7.0, 4.2), layout="constrained")
        axes = figure.add_subplot()
        for variant in variants:
            curves = [r.loss_curves[term] for r in records if r.variant == variant and term in r.loss_curves]
            steps, mean, std = mean_curve(curves)
            if steps.size == 0:
                continue
            seeds = f"{len(curves)} seed{'s' if len(curves) != 1 else ''}"
            line = axes.plot(steps, mean, label=f"{variant} ({seeds})")[0]
            if len(curves) > 1:
                axes.fill_between(steps, mean - std, mean + std, color=line.get_color(), alpha=0.2, linewidth=0)
        axes.set_xlabel("step")
        axes.set_ylabel(f"loss/{term}")
        axes.set_title(f"loss/{term}: mean over seeds (band: ± 1 std)")
        axes.grid(alpha=0.3)
        axes.legend()
        path = output_dir / f"loss_{term}.png"
        _save(figure, path)
        written.append(path)
    return written


def plot_accuracy(rows: Sequence[VariantRow], records: Sequence[RunRecord], output_dir: Path) -> Path | None:
    """``accuracy.png``: kNN (and linear-probe) top-1 per variant, bars at the mean over seeds with
    ± 1 std error bars, and each seed's value as a dot. ``None`` when no run reported an accuracy."""
    columns = [c for c in SHOWN_ACCURACIES if any(row.stats[c].n for row in rows)]
    if not columns:
        return None
    figure = Figure(figsize=(max(5.5, 1.6 * len(rows) * len(columns) + 1.5), 4.2), layout="constrained")
    axes = figure.add_subplot()
    width = 0.8 / len(columns)
    positions = np.arange(len(rows), dtype=np.float64)
    lowest = math.inf
    for i, column in enumerate(columns):
        x = positions + (i - (len(columns) - 1) / 2) * width
        means = np.array([row.stats[column].mean for row in rows])
        errors = np.array([0.0 if math.isnan(row.stats[column].std) else row.stats[column].std for row in rows])
        bars = axes.bar(x, np.nan_to_num(means), width * 0.9, yerr=errors, capsize=4, label=ACCURACY_COLUMNS[column])
        for xi, row in zip(x, rows, strict=True):
            seeds = [r.metrics[column] for r in records if r.variant == row.variant.name and column in r.metrics]
            axes.scatter([xi] * len(seeds), seeds, color="black", s=10, zorder=3)
            lowest = min([lowest, *seeds])
        axes.bar_label(
            bars, labels=[f"{m:.1f}" if not math.isnan(m) else "" for m in means], label_type="center", color="white"
        )
    axes.set_xticks(positions, [row.variant.name for row in rows])
    axes.set_ylabel("accuracy (%)")
    if math.isfinite(lowest):
        axes.set_ylim(bottom=max(0.0, lowest - 10.0))
    axes.set_title("top-1: mean ± std over seeds (dots: seeds)")
    axes.grid(axis="y", alpha=0.3)
    axes.legend(loc="upper center", bbox_to_anchor=(0.5, -0.1), ncol=len(columns), frameon=False)
    path = output_dir / "accuracy.png"
    _save(figure, path)
    return path
